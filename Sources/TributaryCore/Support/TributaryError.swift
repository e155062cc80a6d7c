/// The domain error: a stable machine-readable ``code`` and a user-safe ``message``.
///
/// The HTTP layer renders it as `{"error": {"code": …, "message": …}}`. Messages never contain
/// secrets; they say what was wrong and how to fix it.
public struct TributaryError: Error, Sendable, Equatable, CustomStringConvertible {
    /// An extensible error code (`invalid_record`, `unknown_model`, …).
    public struct Code: RawRepresentable, Sendable, Hashable, CustomStringConvertible {
        public let rawValue: String
        public init(rawValue: String) { self.rawValue = rawValue }
        public var description: String { rawValue }

        public static let invalidRecord = Code(rawValue: "invalid_record")
        public static let invalidModel = Code(rawValue: "invalid_model")
        public static let unknownModel = Code(rawValue: "unknown_model")
        public static let invalidVariant = Code(rawValue: "invalid_variant")
        public static let invalidCheckpoint = Code(rawValue: "invalid_checkpoint")
        public static let invalidCursor = Code(rawValue: "invalid_cursor")
        public static let invalidQuery = Code(rawValue: "invalid_query_params")
        public static let invalidMetadata = Code(rawValue: "invalid_metadata")
        public static let invalidFrequency = Code(rawValue: "invalid_frequency")
        public static let unknownConnection = Code(rawValue: "unknown_connection")
        public static let unknownSync = Code(rawValue: "unknown_sync")
        public static let unknownVariant = Code(rawValue: "unknown_sync_variant")
        public static let unknownProviderConfig = Code(rawValue: "unknown_provider_config")
        public static let unknownFunction = Code(rawValue: "unknown_function")
        public static let syncRunning = Code(rawValue: "sync_running")
        public static let variantExists = Code(rawValue: "sync_variant_already_exists")
        public static let resourceCapped = Code(rawValue: "resource_capped")
        public static let invalidCredentials = Code(rawValue: "invalid_credentials")
        public static let providerError = Code(rawValue: "provider_error")
        /// The run does not exist (never did, or it went with its variant or connection).
        public static let unknownRun = Code(rawValue: "unknown_run")
        /// The run exists but is no longer running (finished, cancelled, expired or queued again).
        public static let runNotRunning = Code(rawValue: "run_not_running")
        /// The write's run lease is no longer held: its run was ended (cancelled, reset, deleted),
        /// expired, or taken over by a later attempt. Nothing was written.
        public static let leaseLost = Code(rawValue: "lease_lost")
        /// A call names more variants than one request may change at once.
        public static let tooManyVariants = Code(rawValue: "too_many_variants")
        /// An action's input lacks a value its request needs, or has one of the wrong kind (Nango's code).
        public static let invalidActionInput = Code(rawValue: "invalid_action_input")
        /// An action's output is larger than its `max_output_bytes` (Nango's code).
        public static let outputTooLarge = Code(rawValue: "script_output_too_large")
        /// No such Connect session (its token is wrong, deleted, or of another environment).
        public static let unknownConnectSession = Code(rawValue: "unknown_connect_session")
        /// The Connect session's 30 minutes are over.
        public static let connectSessionExpired = Code(rawValue: "connect_session_expired")
        /// The Connect session already made its connection.
        public static let connectSessionUsed = Code(rawValue: "connect_session_used")
        /// The database cannot be reached right now (retry later).
        public static let storeUnavailable = Code(rawValue: "store_unavailable")
        /// `tributary backup` could not write or check its copy.
        public static let backupFailed = Code(rawValue: "backup_failed")
    }

    public let code: Code
    public let message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { "\(code): \(message)" }
}
