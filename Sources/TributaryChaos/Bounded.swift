import TributaryCore

/// Waits for `operation` for `seconds` at most, then cancels it and throws — without waiting for a
/// cancelled operation that does not end (a client library stuck in a connect or a read), so a
/// hanging dependency fails a chaos round with a message instead of hanging the harness.
func bounded<T: Sendable>(_ what: String, seconds: Int, _ operation: @escaping @Sendable () async throws -> T) async throws -> T {
    let race = FirstResult<T>()
    // Both owned by the race: the work cancels the timer when it ends, the timer the work when it fires.
    let work = Task {
        do { race.finish(.success(try await operation())) } catch { race.finish(.failure(error)) }
    }
    let timer = Task {
        guard (try? await Task.sleep(for: .seconds(seconds))) != nil else { return }
        work.cancel()
        race.finish(.failure(ChaosError("\(what) did not answer within \(seconds) s")))
    }
    race.onFinish { timer.cancel() }
    return try await race.value()
}
