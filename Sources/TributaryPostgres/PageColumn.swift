import PostgresNIO
import TributaryCore

/// One column of a page's records — ids, hashes or canonical JSON payloads — bound as a
/// one-dimensional PostgreSQL array (`text[]` or `int8[]`) in the binary form `array_recv` reads,
/// written straight from the records into the statement's bindings.
///
/// It sends the bytes postgres-nio's own `[String]` and `[Int64]` bindings send (tests compare
/// them), at a fraction of the cost: a page of 1,000 records' ids and hashes took ~170 µs to bind
/// that way, its payloads ~230 µs more, each payload first copied into a `String` (validated,
/// allocated) and every element written through the generic encoder (docs/BENCHMARKS.md, nineteenth
/// round). Here the size is summed once, the buffer grown once, and each element's length and
/// bytes stored directly.
///
/// Ids and payloads go as their UTF-8 bytes: a record's canonical JSON is written from Swift strings,
/// or from input bytes checked to be valid UTF-8 or repaired (``DirectRecordReader``), so both are valid UTF-8 —
/// and the server checks every `text` element it receives, so a byte that were not would fail the
/// statement, never be stored.
struct PageColumn: PostgresDynamicTypeEncodable, Sendable {
    /// Which of a record's values the array holds.
    enum Values: Sendable {
        /// ``PreparedRecord/id`` (`text[]`).
        case ids
        /// ``PreparedRecord/hash`` as a signed 64-bit integer, bit for bit (`int8[]`).
        case hashes
        /// ``PreparedRecord/json`` (`text[]`).
        case payloads
    }

    let records: [PreparedRecord]
    let values: Values
    /// The bytes of the array's elements, their 4-byte lengths included.
    private let elementBytes: Int

    /// The array's header: flags, element type, and — unless empty — its one dimension's length and
    /// lower bound (`array_send`'s layout).
    private static let headerBytes = 12
    private static let dimensionBytes = 8

    /// The most bytes PostgreSQL takes in one value, or one message (1 GiB less a byte).
    static let maximumBytes = (1 << 30) - 1

    /// - Throws: ``TributaryError`` `invalid_record` if the array would pass `limit`, ``maximumBytes`` (a page
    ///   of more than 1 GiB, which the pipeline's bounded memory rules out): the server would refuse
    ///   it, every time, so the run fails rather than being retried.
    init(_ records: [PreparedRecord], _ values: Values, limit: Int = maximumBytes) throws(TributaryError) {
        var total = 0
        switch values {
        case .ids:
            for record in records { total += 4 + record.id.utf8.count }
        case .hashes:
            total = records.count * 12
        case .payloads:
            for record in records { total += 4 + record.json.count }
        }
        guard total + Self.headerBytes + Self.dimensionBytes <= limit else {
            throw TributaryError(
                .invalidRecord,
                "A page of \(records.count) records is too large: its \(values) come to \(total) bytes, more than one PostgreSQL value may hold (\(limit) bytes).")
        }
        self.records = records
        self.values = values
        elementBytes = total
    }

    var psqlType: PostgresDataType { values == .hashes ? .int8Array : .textArray }
    var psqlFormat: PostgresFormat { .binary }

    func encode<JSONEncoder: PostgresJSONEncoder>(into buffer: inout ByteBuffer, context: PostgresEncodingContext<JSONEncoder>) {
        buffer.writeInteger(records.isEmpty ? 0 : 1, as: Int32.self)  // dimensions
        buffer.writeInteger(0, as: Int32.self)  // no NULL element
        buffer.writeInteger((values == .hashes ? PostgresDataType.int8 : .text).rawValue)
        guard !records.isEmpty else { return }
        buffer.writeInteger(Int32(truncatingIfNeeded: records.count))  // checked in init: fits
        buffer.writeInteger(1, as: Int32.self)  // lower bound
        let count = elementBytes
        buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: count) { out in
            var at = 0
            func put(_ bytes: UnsafeRawBufferPointer) {
                out.storeBytes(of: UInt32(truncatingIfNeeded: bytes.count).bigEndian, toByteOffset: at, as: UInt32.self)
                UnsafeMutableRawBufferPointer(rebasing: out[(at + 4)...]).copyMemory(from: bytes)
                at += 4 + bytes.count
            }
            switch values {
            case .ids:
                for record in records {
                    var id = record.id
                    id.withUTF8 { put(UnsafeRawBufferPointer($0)) }
                }
            case .hashes:
                for record in records {
                    out.storeBytes(of: UInt32(8).bigEndian, toByteOffset: at, as: UInt32.self)
                    out.storeBytes(of: record.hash.bigEndian, toByteOffset: at + 4, as: UInt64.self)
                    at += 12
                }
            case .payloads:
                for record in records { record.json.withUnsafeBytes(put) }
            }
            assert(at == count, "a page column wrote \(at) bytes, sized for \(count)")
            return count
        }
    }
}
