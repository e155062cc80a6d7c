/// The 64-bit content hash Tributary stores for every record.
///
/// It only has to tell "this record's canonical JSON changed" from "it did not", comparing a record
/// with its own previous version, so a fast non-cryptographic hash is the right tool: this is
/// wyhash (final v4, Wang Yi, public domain), which runs at several GB/s where SHA-256 would take a
/// large share of the ingest budget. The chance that a real change goes unnoticed is 2⁻⁶⁴ per change.
///
/// The value is part of the stored data: changing the function makes every record look changed once.
public enum ContentHash {
    private static let s0: UInt64 = 0xa076_1d64_78bd_642f
    private static let s1: UInt64 = 0xe703_7ed1_a0b4_28db
    private static let s2: UInt64 = 0x8ebc_6af0_9c88_c6e3
    private static let s3: UInt64 = 0x5899_65cc_7537_4cc3

    /// Hashes bytes.
    public static func hash(_ bytes: [UInt8]) -> UInt64 {
        bytes.withUnsafeBytes { hash($0) }
    }

    @inline(__always) private static func mum(_ a: UInt64, _ b: UInt64) -> (UInt64, UInt64) {
        let r = a.multipliedFullWidth(by: b)
        return (r.low, r.high)
    }

    @inline(__always) private static func mix(_ a: UInt64, _ b: UInt64) -> UInt64 {
        let (lo, hi) = mum(a, b)
        return lo ^ hi
    }

    @inline(__always) private static func r8(_ p: UnsafeRawBufferPointer, _ offset: Int) -> UInt64 {
        UInt64(littleEndian: p.loadUnaligned(fromByteOffset: offset, as: UInt64.self))
    }

    @inline(__always) private static func r4(_ p: UnsafeRawBufferPointer, _ offset: Int) -> UInt64 {
        UInt64(UInt32(littleEndian: p.loadUnaligned(fromByteOffset: offset, as: UInt32.self)))
    }

    /// Hashes raw bytes.
    public static func hash(_ p: UnsafeRawBufferPointer, seed initialSeed: UInt64 = 0) -> UInt64 {
        let len = p.count
        var seed = initialSeed ^ mix(initialSeed ^ s0, s1)
        var a: UInt64
        var b: UInt64
        if len <= 16 {
            if len >= 4 {
                let shift = (len >> 3) << 2
                a = (r4(p, 0) << 32) | r4(p, shift)
                b = (r4(p, len - 4) << 32) | r4(p, len - 4 - shift)
            } else if len > 0 {
                a = (UInt64(p[0]) << 16) | (UInt64(p[len >> 1]) << 8) | UInt64(p[len - 1])
                b = 0
            } else {
                a = 0
                b = 0
            }
        } else {
            var i = len
            var offset = 0
            if i > 48 {
                var see1 = seed
                var see2 = seed
                repeat {
                    seed = mix(r8(p, offset) ^ s1, r8(p, offset + 8) ^ seed)
                    see1 = mix(r8(p, offset + 16) ^ s2, r8(p, offset + 24) ^ see1)
                    see2 = mix(r8(p, offset + 32) ^ s3, r8(p, offset + 40) ^ see2)
                    offset += 48
                    i -= 48
                } while i > 48
                seed ^= see1 ^ see2
            }
            while i > 16 {
                seed = mix(r8(p, offset) ^ s1, r8(p, offset + 8) ^ seed)
                i -= 16
                offset += 16
            }
            a = r8(p, offset + i - 16)
            b = r8(p, offset + i - 8)
        }
        a ^= s1
        b ^= seed
        (a, b) = mum(a, b)
        return mix(a ^ s0 ^ UInt64(len), b ^ s1)
    }
}
