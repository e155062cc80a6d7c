import TributaryCore

/// Everything Tributary persists: the composition of the role protocols, for the callers that need
/// all of it (the API, the process that assembles the services). Every other consumer takes the role
/// it uses — the scheduler a ``RunQueueStore``, a run's context a ``RunLeaseStore`` and
/// ``RecordWriter``, the delivery service a ``WebhookOutboxStore``, pages a ``StoreReader``.
///
/// The embedded implementation is `SQLiteStore`; `PostgresStore` implements the same protocols and
/// passes the same test suite. The decisions both make are pure rules in `Rules/` (``RunFence``,
/// ``RunStartRule``, ``RunCompletionRule``, ``RunExpiry``, ``NextRunPlan``, ``VariantLifecycle``,
/// ``CredentialRefreshLock``): a store reads, calls the rule, and writes.
///
/// Rules every implementation keeps (the records semantics of SPEC §3):
/// - Records are keyed by (environment, connection, model, variant, id); variants never see or
///   change each other's records.
/// - Saving a record whose canonical JSON hash is unchanged is a no-op: no counter, no cursor move.
/// - Every change of a dataset gets a position in its change feed; a reader paging with cursors
///   sees every change in order and never skips one, also while writers are running.
/// - Each call is one transaction: it is all written, or none of it is. Every write made for a run
///   is fenced by the run's lease in that transaction.
public protocol Store: StoreReader, ConnectionStore, CredentialStore, VariantStore, RunQueueStore, RunLeaseStore, RecordWriter,
    WebhookOutboxStore, ProviderWebhookStore, PurgeStore, HistoryStore, RecordPruneStore, ActionStore,
    ConnectSessionStore, ConnectionEventStore, OperationsStore, ActivityStore
{
    /// Creates or upgrades the schema. Safe to call on every start.
    func migrate() async throws
}
