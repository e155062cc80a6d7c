/// Runs `operation` to its end although the calling task was cancelled — but for `timeout` at most
/// (then it is cancelled), so recording what already happened (a run's outcome, a delivery attempt)
/// never holds up a process that is stopping, even while the database is unreachable.
func shielded<T: Sendable>(timeout: Duration = .seconds(5), _ operation: @escaping @Sendable () async throws -> T) async throws -> T {
    // Both owned here: the work is awaited, the timer cancelled when the work ends.
    let work = Task { try await operation() }
    let timer = Task {
        try await Task.sleep(for: timeout)
        work.cancel()
    }
    defer { timer.cancel() }
    return try await work.value
}
