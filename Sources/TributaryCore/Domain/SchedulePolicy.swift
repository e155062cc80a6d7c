/// How a sync's variants keep to their ``Frequency``: a per-variant jitter and what happens to a
/// slot that comes while the variant's previous run is still active (`jitter_seconds` and
/// `overlap` in a sync's configuration).
public struct SchedulePolicy: Sendable, Hashable {
    /// What a slot that comes while a run is queued or running does.
    public enum Overlap: String, Sendable, Hashable, CaseIterable {
        /// It is missed: the next run is the first slot after the active run ends.
        case skip
        /// It is kept, once: a run starts as soon as the active run ends (Temporal's "buffer one").
        /// Still one active run per variant.
        case runAfter = "run_after"
    }

    /// The longest jitter allowed (one day).
    public static let maximumJitterSeconds: Int64 = 86_400

    /// Every slot of a variant is moved later by a fixed amount in `0..<jitterSeconds`, drawn from
    /// the variant's id: the same for every run of that variant (its schedule stays regular), spread
    /// evenly across variants, so ten thousand variants of one sync do not start in the same second.
    public var jitterSeconds: Int64
    public var overlap: Overlap

    public init(jitterSeconds: Int64 = 0, overlap: Overlap = .skip) {
        self.jitterSeconds = jitterSeconds
        self.overlap = overlap
    }

    /// The variant's offset in microseconds, in `0..<jitterSeconds × 1 000 000` (0 without jitter):
    /// FNV-1a of its id, so it never changes for the variant and needs no stored state.
    public func offsetMicroseconds(forVariant id: String) -> Int64 {
        guard jitterSeconds > 0 else { return 0 }
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in id.utf8 {
            hash ^= UInt64(byte)
            hash = hash &* 0x0000_0100_0000_01b3
        }
        let window = UInt64(min(jitterSeconds, Self.maximumJitterSeconds)) * 1_000_000
        return Int64(hash % window)
    }

    /// The next run after a run that became active at `activeSince` ended at `end`: with `run_after`,
    /// at once when a slot came in between; otherwise the first slot after the end.
    public func next(
        _ frequency: Frequency, variant id: String, origin: Timestamp, activeSince: Timestamp?, end: Timestamp
    ) -> Timestamp {
        let offset = offsetMicroseconds(forVariant: id)
        if overlap == .runAfter, let activeSince, frequency.nextSlot(after: activeSince, origin: origin, offsetMicroseconds: offset) <= end {
            return end
        }
        return frequency.nextSlot(after: end, origin: origin, offsetMicroseconds: offset)
    }
}
