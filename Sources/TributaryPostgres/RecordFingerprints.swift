import TributaryCore

/// The records a dataset held after a run, as their content hashes (``PreparedRecord/hash``, of
/// canonical JSON that holds the record's id, so one 64-bit value stands for the id and the
/// content), sorted: what lets the dataset's next run tell, before a page's lookup, which records
/// are likely to need a write — those whose hash is not here (``StoredHashes``). 8 bytes a record,
/// and half a byte to a byte of index.
///
/// A guess, never trusted: the lookup's check still decides what is written, so a hash that is
/// wrong either way (a record another writer changed since, a deleted one, two records with one
/// hash — 2⁻⁶⁴ a pair) only costs the page its second call.
struct RecordFingerprints: Sendable, Equatable {
    /// Sorted, without repeats.
    private(set) var values: [UInt64]
    /// How many hashes the set held when a run last replaced it whole: what incremental runs added
    /// since may grow it to twice that (``afterRun(_:run:)``).
    private(set) var base: Int
    /// Where each bucket of ``values`` starts — the hashes whose top ``bucketBits`` bits are the
    /// bucket's number — and, last, where the values end: a lookup reads one bucket of about four
    /// to eight hashes (a cache line or two) instead of a binary search's twenty reads across 8 MB
    /// at a million records. 4 bytes a bucket.
    private var starts: [Int32]
    private var bucketBits: Int

    var count: Int { values.count }

    /// An empty set.
    init() {
        values = []
        base = 0
        starts = [0, 0]
        bucketBits = 0
    }

    /// The set of `hashes`, in any order, repeats allowed: sorted by bucket (one counting pass and
    /// one placing pass, then each bucket's few hashes), not by a comparison sort of them all.
    init(unsorted hashes: [UInt64]) {
        let bits = Self.bucketBits(for: hashes.count)
        let buckets = 1 << bits
        var starts = [Int32](repeating: 0, count: buckets + 1)
        for hash in hashes { starts[Self.bucket(of: hash, bits: bits) + 1] += 1 }
        for bucket in 0..<buckets { starts[bucket + 1] += starts[bucket] }
        var next = starts
        var placed = [UInt64](repeating: 0, count: hashes.count)
        for hash in hashes {
            let bucket = Self.bucket(of: hash, bits: bits)
            placed[Int(next[bucket])] = hash
            next[bucket] += 1
        }
        // Each bucket sorted in place, its repeats dropped, the buckets moved up to close the gaps.
        var kept = 0
        for bucket in 0..<buckets {
            let (start, end) = (Int(starts[bucket]), Int(starts[bucket + 1]))
            starts[bucket] = Int32(truncatingIfNeeded: kept)
            placed[start..<end].sort()
            for index in start..<end where index == start || placed[index] != placed[index - 1] {
                placed[kept] = placed[index]
                kept += 1
            }
        }
        starts[buckets] = Int32(truncatingIfNeeded: kept)
        placed.removeLast(placed.count - kept)
        values = placed
        base = kept
        self.starts = starts
        bucketBits = bits
    }

    /// A bucket for every four to eight hashes, a power of two (one bucket below eight).
    private static func bucketBits(for count: Int) -> Int {
        var bits = 0
        while bits < 30, count >> (bits + 3) > 0 { bits += 1 }
        return bits
    }

    private static func bucket(of hash: UInt64, bits: Int) -> Int {
        bits == 0 ? 0 : Int(truncatingIfNeeded: hash >> UInt64(64 - bits))
    }

    /// Whether the set holds `hash` (a search of its bucket).
    func contains(_ hash: UInt64) -> Bool {
        let bucket = Self.bucket(of: hash, bits: bucketBits)
        var low = Int(starts[bucket])
        let end = Int(starts[bucket + 1])
        while low < end {
            if values[low] >= hash { return values[low] == hash }
            low += 1
        }
        return false
    }

    /// The positions in `hashes` of those the set does not hold, in increasing order: what
    /// ``contains(_:)`` answers for each, found in two passes — every hash's bucket bounds first,
    /// then every bucket's search — so the reads of different hashes, each likely a cache miss in
    /// a set of megabytes, do not wait for one another.
    func missing(_ hashes: [UInt64]) -> [Int] {
        let bits = bucketBits
        return withUnsafeTemporaryAllocation(of: (Int32, Int32).self, capacity: max(hashes.count, 1)) { bounds in
            hashes.withUnsafeBufferPointer { hashes in
                starts.withUnsafeBufferPointer { starts in
                    for i in hashes.indices {
                        let bucket = Self.bucket(of: hashes[i], bits: bits)
                        bounds[i] = (starts[bucket], starts[bucket + 1])
                    }
                }
                return values.withUnsafeBufferPointer { values in
                    var missing: [Int] = []
                    for i in hashes.indices {
                        let hash = hashes[i]
                        var low = Int(bounds[i].0)
                        let end = Int(bounds[i].1)
                        while low < end, values[low] < hash { low += 1 }
                        if low == end || values[low] != hash { missing.append(i) }
                    }
                    return missing
                }
            }
        }
    }

    /// Both sets' hashes.
    func union(_ other: RecordFingerprints) -> RecordFingerprints {
        var union = RecordFingerprints(unsorted: values + other.values)
        union.base = max(base, other.base)
        return union
    }

    /// What a dataset's set becomes after a run that saw `run`:
    /// - a run that saw at least as many records as the set held (a full refresh) replaces it —
    ///   records it did not see are gone at the provider or deleted;
    /// - a run that saw fewer (an incremental run, a webhook execution) is added to it, so that
    ///   the records it did not see stay known — unless that makes the set more than twice what
    ///   the last run that replaced it saw (``base``), which only stale hashes do (records since
    ///   changed, each leaving its old hash behind): then the run's own set replaces it.
    static func afterRun(_ previous: RecordFingerprints?, run: RecordFingerprints) -> RecordFingerprints {
        guard let previous, run.count < previous.count else { return run }
        var union = previous.union(run)
        union.base = previous.base
        return union.count > 2 * previous.base ? run : union
    }
}
