/// Schedule arithmetic: a variant runs on a fixed grid `origin + k × interval`.
///
/// After a run ends, the next run is the first grid slot after the end, so slots that passed
/// while the run was active are skipped, never queued; a variant whose slot passed while it was
/// paused runs as soon as it is started again.
public enum Schedule {
    /// The first slot of the grid strictly after `time` (`origin` itself when `time` is before it).
    public static func nextSlot(after time: Timestamp, origin: Timestamp, intervalSeconds: Int64) -> Timestamp {
        precondition(intervalSeconds > 0, "a schedule needs a positive interval")
        let interval = intervalSeconds * 1_000_000
        guard time.microseconds >= origin.microseconds else { return origin }
        let elapsed = time.microseconds - origin.microseconds
        return Timestamp(microseconds: origin.microseconds + (elapsed / interval + 1) * interval)
    }

    /// The first slot at or after `time` (used when a frequency changes: the next run keeps to the grid).
    public static func slot(atOrAfter time: Timestamp, origin: Timestamp, intervalSeconds: Int64) -> Timestamp {
        let interval = intervalSeconds * 1_000_000
        guard time.microseconds > origin.microseconds else { return origin }
        let elapsed = time.microseconds - origin.microseconds
        return Timestamp(microseconds: origin.microseconds + ((elapsed + interval - 1) / interval) * interval)
    }
}
