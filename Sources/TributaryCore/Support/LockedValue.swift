import Synchronization

/// A value shared by concurrent closures, behind a lock. (A `Mutex` itself cannot be captured by an
/// escaping closure: it is not copyable.)
public final class LockedValue<Value: Sendable>: Sendable {
    private let value: Mutex<Value>

    public init(_ value: Value) {
        self.value = Mutex(value)
    }

    /// Runs `body` with the value, under the lock.
    public func withLock<Result: Sendable>(_ body: (inout Value) -> Result) -> Result {
        value.withLock { body(&$0) }
    }
}
