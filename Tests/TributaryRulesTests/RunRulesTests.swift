import Testing
import TributaryCore
import TributaryStore

let ref = VariantRef(connection: ConnectionRef(environment: "dev", providerConfigKey: "shop", connectionId: "c1"), syncName: "orders")

func state(checkpoint: Checkpoint? = nil, window: Int64? = nil, checkpointWindow: Int64? = nil, lastSync: Timestamp? = nil) -> VariantState {
    VariantState(
        id: "v", ref: ref, lastSyncDate: lastSync, checkpoint: checkpoint, deletionGeneration: window, checkpointGeneration: checkpointWindow,
        createdAt: Timestamp(microseconds: 0))
}

@Suite("Fencing (RunFence)")
struct RunFenceTests {
    let lease = RunLease(runId: 7, token: 2)
    func row(_ status: RunStatus = .running, token: Int64 = 2, leaseEnd: Int64 = 1_000) -> RunFence.Row {
        RunFence.Row(status: status, token: token, leaseEnd: leaseEnd)
    }

    @Test func aRunningRunUnderTheSameTokenWithTimeLeftHoldsItsLease() throws {
        #expect(RunFence.state(of: lease, row: row(), now: 999) == .held)
        try RunFence.check(lease, row: row(), now: 999)
    }

    @Test func everyOtherRowRefusesTheWriteWithTheCodeThatSaysWhy() {
        let cases: [(RunFence.Row?, Int64, TributaryError.Code)] = [
            (nil, 0, .unknownRun),
            (row(.cancelled), 0, .runNotRunning),
            (row(.queued), 0, .runNotRunning),
            (row(.succeeded), 0, .runNotRunning),
            (row(.expired), 0, .runNotRunning),
            (row(token: 3), 0, .leaseLost),
            (row(token: 1), 0, .leaseLost),
            (row(leaseEnd: 1_000), 1_000, .leaseLost),
        ]
        for (row, now, code) in cases {
            #expect(!RunFence.state(of: lease, row: row, now: now).isHeld)
            #expect(throws: TributaryError.self) { try RunFence.check(lease, row: row, now: now) }
            do {
                try RunFence.check(lease, row: row, now: now)
            } catch {
                #expect(error.code == code, "\(String(describing: row)) at \(now)")
            }
        }
    }
}

@Suite("Run starts (RunStartRule)")
struct RunStartRuleTests {
    let now = Timestamp(microseconds: 5_000)

    @Test func aNewRunStartsNowAsAttemptOneAndOpensAWindowNamedAfterItself() {
        let decision = RunStartRule.begin(runId: 40, row: .new, now: now, state: state(), tracksDeletes: true)
        #expect(decision.started.lease == RunLease(runId: 40, token: 1))
        #expect(decision.started.startedAt == now)
        #expect(decision.started.kind == .initial)
        #expect(decision.started.deletionGeneration == 40 && !decision.started.resumesWindow && !decision.started.distrustsCheckpoint)
        #expect(decision.variantWindow == .some(40))
        let incremental = RunStartRule.begin(runId: 41, row: .new, now: now, state: state(lastSync: now), tracksDeletes: false)
        #expect(incremental.started.kind == .incremental && incremental.started.deletionGeneration == nil)
    }

    @Test func aResumedAttemptKeepsItsFirstStartKindAndWindow() {
        let first = Timestamp(microseconds: 1_000)
        let row = RunStartRule.Row(attempts: 1, startedAt: first, kind: .initial, deletionGeneration: 40)
        // Resumed from a checkpoint saved in its window.
        let decision = RunStartRule.begin(
            runId: 40, row: row, now: now, state: state(checkpoint: ["page": 3], window: 40, checkpointWindow: 40, lastSync: now), tracksDeletes: true)
        #expect(decision.started.lease.token == 2)
        #expect(decision.started.startedAt == first, "the first attempt's start")
        #expect(decision.started.kind == .initial, "the first attempt's kind, although lastSyncDate is set now")
        #expect(decision.started.deletionGeneration == 40 && decision.started.resumesWindow)
        #expect(decision.variantWindow == nil, "the window stays as it is")
        // Restarting inside its own window, before any checkpoint was saved.
        let restart = RunStartRule.begin(runId: 40, row: row, now: now, state: state(window: 40), tracksDeletes: true)
        #expect(restart.started.deletionGeneration == 40 && restart.started.resumesWindow)
    }

    @Test func aNewRunContinuesAnOpenWindowOnlyFromACheckpointSavedInIt() {
        let resumed = RunStartRule.begin(
            runId: 50, row: .new, now: now, state: state(checkpoint: ["page": 2], window: 40, checkpointWindow: 40), tracksDeletes: true)
        #expect(resumed.started.deletionGeneration == 40 && resumed.started.resumesWindow)
        // Without a checkpoint, a new window.
        let fresh = RunStartRule.begin(runId: 50, row: .new, now: now, state: state(window: 40), tracksDeletes: true)
        #expect(fresh.started.deletionGeneration == 50 && !fresh.started.resumesWindow && fresh.variantWindow == .some(50))
    }

    @Test func aCheckpointSavedOutsideTheOpenWindowIsDistrustedAndDeletesNothing() {
        // Deletion tracking turned on after a failed run left a checkpoint: no window at all.
        let tracking = RunStartRule.begin(runId: 60, row: .new, now: now, state: state(checkpoint: ["page": 4]), tracksDeletes: true)
        #expect(tracking.started.distrustsCheckpoint)
        #expect(tracking.started.deletionGeneration == nil, "no window: the completion deletes nothing")
        #expect(tracking.variantWindow == nil)
        // A checkpoint from another window than the one open.
        let other = RunStartRule.begin(
            runId: 61, row: .new, now: now, state: state(checkpoint: ["page": 4], window: 40, checkpointWindow: 39), tracksDeletes: true)
        #expect(other.started.distrustsCheckpoint && other.started.deletionGeneration == nil)
        #expect(other.variantWindow == .some(nil), "the stale window closes")
        // Not tracking: no window, and an open one closes.
        let plain = RunStartRule.begin(runId: 62, row: .new, now: now, state: state(window: 40), tracksDeletes: false)
        #expect(!plain.started.distrustsCheckpoint && plain.started.deletionGeneration == nil && plain.variantWindow == .some(nil))
    }
}

@Suite("Run ends (RunCompletionRule)")
struct RunCompletionRuleTests {
    func row(kind: RunKind = .initial, generation: Int64? = 40, results: [String: ModelResult] = ["Order": ModelResult(added: 3)]) -> RunCompletionRule.Row {
        RunCompletionRule.Row(
            fence: RunFence.Row(status: .running, token: 1, leaseEnd: 10), kind: kind, startedAt: Timestamp(microseconds: 100), deletionGeneration: generation,
            results: results)
    }

    @Test func successDeletesUnseenInTheRunsWindowAndSetsLastSyncDateToItsFirstStart() {
        let plan = NextRunPlan(frequency: try! Frequency("every hour"), retry: RetryPolicy(), from: Timestamp(microseconds: 200), jitter: 1)
        let decision = RunCompletionRule.decide(
            RunCompletion(outcome: .succeeded, models: ["Order", "Line"], deleteUnseenModels: ["Order", "Line"], clearCheckpoint: true, nextRun: plan), row: row())
        #expect(decision.status == .succeeded)
        #expect(decision.results == ["Order": ModelResult(added: 3), "Line": ModelResult()], "counts so far; every declared model present")
        #expect(decision.deleteUnseen?.models == ["Order", "Line"] && decision.deleteUnseen?.generation == 40)
        #expect(decision.variant?.lastSyncDate == Timestamp(microseconds: 100) && decision.variant?.clearCheckpoint == true)
        #expect(decision.plansNextRun)
    }

    @Test func aRunWithoutAWindowNeverDeletes() {
        let decision = RunCompletionRule.decide(RunCompletion(outcome: .succeeded, deleteUnseenModels: ["Order"]), row: row(generation: nil))
        #expect(decision.deleteUnseen == nil)
        #expect(decision.variant != nil)
    }

    @Test func failureAndCancellationChangeNoVariantStateButStillPlanTheNextRun() {
        let plan = NextRunPlan(frequency: try! Frequency("every hour"), retry: RetryPolicy(), from: Timestamp(microseconds: 200), jitter: 1)
        for outcome in [RunOutcome.failed(message: "boom"), .cancelled(reason: "stop")] {
            let decision = RunCompletionRule.decide(
                RunCompletion(outcome: outcome, deleteUnseenModels: ["Order"], retry: RetryAdvice(afterSeconds: 5), nextRun: plan), row: row())
            #expect(decision.deleteUnseen == nil && decision.variant == nil)
            #expect(decision.plansNextRun, "no variant leaves the schedule")
            #expect((decision.retry != nil) == (decision.status == .failed), "retry advice is kept for failures only")
        }
    }

    @Test func aWebhookExecutionChangesNoVariantStateAndReopensItsTaskWhenCancelled() {
        let plan = NextRunPlan(frequency: try! Frequency("every hour"), retry: RetryPolicy(), from: Timestamp(microseconds: 200), jitter: 1)
        let done = RunCompletionRule.decide(RunCompletion(outcome: .succeeded, deleteUnseenModels: ["Order"], nextRun: plan), row: row(kind: .webhook))
        #expect(done.variant == nil && done.deleteUnseen == nil && !done.plansNextRun && done.webhookTaskReopens == false)
        let cancelled = RunCompletionRule.decide(RunCompletion(outcome: .cancelled(reason: "shutdown")), row: row(kind: .webhook))
        #expect(cancelled.webhookTaskReopens == true)
    }

    @Test func consecutiveRetryableFailuresCountThisRunAndTheUnbrokenOnesBefore() {
        let failedTemporarily = RunRecord(
            id: 1, variant: ref, status: .failed, kind: .initial, startedAt: Timestamp(microseconds: 0), finishedAt: nil, results: [:], error: "x",
            retry: RetryAdvice())
        var succeeded = failedTemporarily
        succeeded.status = .succeeded
        succeeded.retry = nil
        let decision = RunCompletionRule.decide(RunCompletion(outcome: .failed(message: "503"), retry: RetryAdvice()), row: row())
        #expect(RunCompletionRule.consecutiveRetryableFailures(before: [failedTemporarily, failedTemporarily, succeeded, failedTemporarily], decision: decision) == 3)
        let permanent = RunCompletionRule.decide(RunCompletion(outcome: .failed(message: "400")), row: row())
        #expect(RunCompletionRule.consecutiveRetryableFailures(before: [failedTemporarily], decision: permanent) == 0)
    }
}

@Suite("Next runs (NextRunPlan)")
struct NextRunPlanTests {
    let hourly = try! Frequency("every hour")

    @Test func theNextRunIsTheFirstSlotAfterTheEndOrAnEarlierRetry() {
        let from = Timestamp(microseconds: 3_700_000_000)  // 1 h 1 min 40 s after the origin
        let plan = NextRunPlan(frequency: hourly, retry: RetryPolicy(maxAttempts: 3, baseSeconds: 10, maxSeconds: 900), from: from, jitter: 1)
        #expect(plan.next(for: state(), retry: nil, consecutiveRetryableFailures: 0) == Timestamp(microseconds: 7_200_000_000))
        #expect(plan.next(for: state(), retry: RetryAdvice(), consecutiveRetryableFailures: 1) == Timestamp(microseconds: from.microseconds + 10_000_000))
        #expect(plan.next(for: state(), retry: RetryAdvice(), consecutiveRetryableFailures: 3) == Timestamp(microseconds: from.microseconds + 40_000_000))
        #expect(plan.next(for: state(), retry: RetryAdvice(), consecutiveRetryableFailures: 4) == Timestamp(microseconds: 7_200_000_000), "retries used up")
        // A variant's own frequency wins over the sync's.
        var fast = state()
        fast.frequencyOverride = "every 5 minutes"
        #expect(plan.next(for: fast, retry: nil, consecutiveRetryableFailures: 0) == Timestamp(microseconds: 3_900_000_000))
    }

    @Test func aProvidersRetryAfterIsBoundedAndNonsenseIsIgnored() {
        let from = Timestamp(microseconds: 0)
        let daily = try! Frequency("every day")
        let plan = NextRunPlan(frequency: daily, retry: RetryPolicy(maxAttempts: 3, baseSeconds: 10, maxSeconds: 900), from: from, jitter: 1)
        #expect(plan.next(for: state(), retry: RetryAdvice(afterSeconds: 120), consecutiveRetryableFailures: 1) == Timestamp(microseconds: 120_000_000))
        for wait in [Double.infinity, -Double.infinity, Double.nan, 1e300, -5] {
            let next = plan.next(for: state(), retry: RetryAdvice(afterSeconds: wait), consecutiveRetryableFailures: 1)
            #expect(next.microseconds <= 86_400_000_000, "\(wait) never traps and never plans past the next slot")
            #expect(NextRunPlan.milliseconds(RetryAdvice(afterSeconds: wait)).map { $0 <= 7 * 86_400_000 } ?? true)
        }
    }
}

@Suite("Expiry (RunExpiry)")
struct RunExpiryTests {
    let now = Timestamp(microseconds: 1_000_000)

    @Test func anInterruptedRunIsQueuedAgainUntilItsLeaseExpiredMaxAttemptsTimes() {
        let policy = RunExpiry.Policy(maxAttempts: 3, giveUpDelaySeconds: 60)
        #expect(RunExpiry.action(kind: .initial, expiries: 0, variantPaused: false, now: now, policy: policy) == .requeue)
        #expect(RunExpiry.action(kind: .incremental, expiries: 1, variantPaused: false, now: now, policy: policy) == .requeue)
        #expect(RunExpiry.action(kind: .initial, expiries: 2, variantPaused: false, now: now, policy: policy) == .giveUp(nextRunAt: Timestamp(microseconds: 61_000_000)))
    }

    @Test func aPausedVariantsRunAndAWebhookExecutionAreNotQueuedAgain() {
        let policy = RunExpiry.Policy()
        #expect(RunExpiry.action(kind: .initial, expiries: 0, variantPaused: true, now: now, policy: policy) == .giveUp(nextRunAt: nil))
        #expect(RunExpiry.action(kind: .webhook, expiries: 0, variantPaused: false, now: now, policy: policy) == .expireWebhookExecution)
    }
}

@Suite("Lifecycle changes (VariantLifecycle)")
struct VariantLifecycleTests {
    let active = [
        VariantLifecycle.ActiveRun(id: 1, status: .running, kind: .incremental),
        VariantLifecycle.ActiveRun(id: 2, status: .running, kind: .webhook),
        VariantLifecycle.ActiveRun(id: 3, status: .queued, kind: .initial),
    ]

    @Test func pauseEndsTheVariantsRunsButNotItsWebhookExecutions() {
        let endings = VariantLifecycle.endings(for: .pause, active: active)
        #expect(endings.map(\.runId) == [1, 3])
        #expect(endings.map(\.reason) == ["Cancelled: the variant was paused.", "Cancelled before it started: the variant was paused."])
    }

    @Test func resetEndsEveryRunAndReopensWebhookTasksDeleteEndsEverything() {
        let reset = VariantLifecycle.endings(for: .reset(emptyCache: true), active: active)
        #expect(reset.map(\.runId) == [1, 2, 3])
        #expect(reset.map(\.reopensWebhookTask) == [false, true, false])
        let delete = VariantLifecycle.endings(for: .delete, active: active)
        #expect(delete.map(\.runId) == [1, 2, 3] && delete.allSatisfy { !$0.reopensWebhookTask })
    }
}

@Suite("OAuth refresh lock (CredentialRefreshLock)")
struct CredentialRefreshLockTests {
    @Test func theLockIsFreeUnheldExpiredOrOurs() {
        #expect(CredentialRefreshLock.mayAcquire(holder: "a", currentHolder: nil, until: nil, now: 10))
        #expect(CredentialRefreshLock.mayAcquire(holder: "a", currentHolder: "a", until: 100, now: 10))
        #expect(!CredentialRefreshLock.mayAcquire(holder: "a", currentHolder: "b", until: 100, now: 10))
        #expect(CredentialRefreshLock.mayAcquire(holder: "a", currentHolder: "b", until: 100, now: 100))
    }
}

/// How an action execution's attempt ends and who may write for it.
@Suite("Action attempt rules")
struct ActionAttemptRuleTests {
    let now = Timestamp(microseconds: 1_000_000_000)
    let failure = ActionFailure(status: 424, code: "script_http_error", message: "503")

    @Test func aRetryableAsyncFailureWithRetriesLeftIsQueuedAgainWithDoublingBackoff() {
        let first = ActionAttemptRule.ending(.failed(failure, retryable: true), isAsync: true, retryableFailures: 0, maxRetries: 3, retryDelaySeconds: 5, now: now)
        #expect(first.status == .queued && first.nextAttemptAt == Timestamp(microseconds: now.microseconds + 5_000_000) && !first.sendsWebhook)
        let third = ActionAttemptRule.ending(.failed(failure, retryable: true), isAsync: true, retryableFailures: 2, maxRetries: 3, retryDelaySeconds: 5, now: now)
        #expect(third.nextAttemptAt == Timestamp(microseconds: now.microseconds + 20_000_000))
        let capped = ActionAttemptRule.ending(.failed(failure, retryable: true), isAsync: true, retryableFailures: 4, maxRetries: 9, retryDelaySeconds: 1000, now: now)
        #expect(capped.nextAttemptAt == Timestamp(microseconds: now.microseconds + 3_600_000_000), "at most an hour")
    }

    @Test func everythingElseEndsItAndAnAsyncEndingSendsTheWebhook() {
        let out = ActionAttemptRule.ending(.failed(failure, retryable: true), isAsync: true, retryableFailures: 3, maxRetries: 3, retryDelaySeconds: 5, now: now)
        #expect(out.status == .failed && out.countsRetryableFailure && out.sendsWebhook)
        let plain = ActionAttemptRule.ending(.failed(failure, retryable: false), isAsync: true, retryableFailures: 0, maxRetries: 3, retryDelaySeconds: 5, now: now)
        #expect(plain.status == .failed && !plain.countsRetryableFailure)
        let synchronous = ActionAttemptRule.ending(.failed(failure, retryable: true), isAsync: false, retryableFailures: 0, maxRetries: 3, retryDelaySeconds: 5, now: now)
        #expect(synchronous.status == .failed && !synchronous.sendsWebhook, "the app is waiting for a synchronous one: no retry")
        let success = ActionAttemptRule.ending(.succeeded(output: []), isAsync: false, retryableFailures: 0, maxRetries: 0, retryDelaySeconds: 5, now: now)
        #expect(success.status == .succeeded && !success.sendsWebhook)
    }

    @Test func onlyTheHoldingAttemptWithTimeLeftMayWrite() {
        let lease = ActionLease(id: "a", token: 2)
        #expect(ActionAttemptRule.state(of: lease, row: .init(status: .running, token: 2, leaseEnd: 10), now: 9) == .held)
        #expect(ActionAttemptRule.state(of: lease, row: .init(status: .running, token: 3, leaseEnd: 10), now: 9) != .held)
        #expect(ActionAttemptRule.state(of: lease, row: .init(status: .running, token: 2, leaseEnd: 10), now: 10) != .held)
        #expect(ActionAttemptRule.state(of: lease, row: .init(status: .succeeded, token: 2, leaseEnd: 10), now: 9) != .held)
        #expect(ActionAttemptRule.state(of: lease, row: nil, now: 9) != .held)
    }
}

@Suite("Outbox backlog over time (OutboxFlow)")
struct OutboxFlowTests {
    @Test func theBacklogIsCountedBackFromNow() {
        // Hours 10…13. Now (in hour 13) 2 wait. Hour 11 created 5, hour 12 created 1 and ended 4, hour 13 ended 1.
        let flow = OutboxFlow(pendingNow: 2, createdPerHour: [11: 5, 12: 1], endedPerHour: [12: 4, 13: 1])
        // End of 10: 2 − (5+1) + (4+1) = 1; end of 11: 2 − 1 + 5 = 6; end of 12: 2 − 0 + 1 = 3; end of 13: 2.
        #expect(flow.backlog(atEndOf: [10, 11, 12, 13]) == [1, 6, 3, 2])
        #expect(OutboxFlow(pendingNow: 0, createdPerHour: [5: 3], endedPerHour: [:]).backlog(atEndOf: [4]) == [0], "never below zero")
    }
}
