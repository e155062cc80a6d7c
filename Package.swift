// swift-tools-version:6.2
import PackageDescription

let strict: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
]

let package = Package(
    name: "Tributary",
    platforms: [.macOS(.v15)],
    products: [
        .library(name: "Tributary", targets: ["Tributary"]),
        // Opt-in OpenTelemetry export for user binaries: `TributaryCLI.main(functions: …, tracing: OTelTracing.backend)`.
        .library(name: "TributaryTracing", targets: ["TributaryTracing"]),
        .executable(name: "tributary", targets: ["tributary"]),
        .executable(name: "tributary-bench", targets: ["tributary-bench"]),
    ],
    dependencies: [
        .package(url: "https://github.com/groue/GRDB.swift", from: "7.10.0"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.2.2"),
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/x-sheep/swift-property-based", from: "2.0.1"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-crypto", from: "4.5.2"),
        .package(url: "https://github.com/swift-server/async-http-client", from: "1.37.0"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/vapor/postgres-nio", from: "1.33.2"),
        .package(url: "https://github.com/hummingbird-project/swift-mustache", from: "2.1.1"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/apple/swift-distributed-tracing", from: "1.7.3"),
        // OTLP/HTTP only: the gRPC exporter's dependencies (grpc-swift, nio-http2) are not built.
        .package(url: "https://github.com/swift-otel/swift-otel", from: "1.6.0", traits: ["OTLPHTTP"]),
    ],
    targets: [
        // Domain, JSON, configuration, errors and the sync-function API. No I/O.
        .target(
            name: "TributaryCore",
            dependencies: [.product(name: "Yams", package: "Yams"), .product(name: "Crypto", package: "swift-crypto")],
            swiftSettings: strict
        ),
        // The one `Store` protocol and the values that cross it.
        .target(name: "TributaryStore", dependencies: ["TributaryCore"], swiftSettings: strict),
        // The embedded store: SQLite through GRDB.
        .target(
            name: "TributarySQLite",
            dependencies: [
                "TributaryCore", "TributaryStore",
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "GRDBSQLite", package: "GRDB.swift"),
            ],
            swiftSettings: strict
        ),
        // The scale-out store: PostgreSQL through postgres-nio, for many API and worker processes over one database.
        .target(
            name: "TributaryPostgres",
            dependencies: [
                "TributaryCore", "TributaryStore",
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strict
        ),
        // Runs sync functions (executor, run context, function registry), the run queue's worker and
        // scheduler, and provider access (outbound HTTP with credentials, retries, pagination).
        .target(
            name: "TributaryEngine",
            dependencies: [
                "TributaryCore", "TributaryStore",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                // Run, provider, webhook and store figures through the swift-metrics API (``TributaryMetrics``).
                .product(name: "CoreMetrics", package: "swift-metrics"),
                // A span per run, provider call and store write through the swift-distributed-tracing API
                // (``TributaryTracer``); the exporter is chosen by the binary (TributaryTracing).
                .product(name: "Tracing", package: "swift-distributed-tracing"),
            ],
            swiftSettings: strict
        ),
        // The Nango-compatible HTTP API on Hummingbird 2, and the dashboard: server-rendered Mustache
        // pages behind a login with the environment's secret key.
        .target(
            name: "TributaryServer",
            dependencies: [
                "TributaryCore", "TributaryStore", "TributaryEngine",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Mustache", package: "swift-mustache"),
                .product(name: "Crypto", package: "swift-crypto"),
                // `GET /metrics`: the Prometheus text format of the process's swift-metrics figures.
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
            ],
            resources: [.copy("openapi.yaml"), .copy("Dashboard/Templates"), .copy("Dashboard/Assets")],
            swiftSettings: strict
        ),
        // The demo shop: its data, its REST API (Hummingbird) and the built-in demo configuration and sync functions.
        .target(
            name: "TributaryDemo",
            dependencies: ["TributaryCore", .product(name: "Hummingbird", package: "hummingbird"), .product(name: "Logging", package: "swift-log")], swiftSettings: strict),
        // The command line (`tributary dryrun`, `tributary demo`, …) as a library, so user packages get the same CLI.
        .target(
            name: "TributaryCLI",
            dependencies: [
                "TributaryCore", "TributaryStore", "TributarySQLite", "TributaryPostgres", "TributaryEngine", "TributaryDemo", "TributaryServer",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        // Umbrella module for user packages: `import Tributary`.
        .target(
            name: "Tributary",
            dependencies: ["TributaryCore", "TributaryStore", "TributarySQLite", "TributaryPostgres", "TributaryEngine", "TributaryServer", "TributaryCLI"],
            swiftSettings: strict
        ),
        // OpenTelemetry export of the engine's spans (swift-otel, OTLP/HTTP). Linked only by the `tributary`
        // binary and by user packages that ask for it: the library product and the tests never build it.
        .target(
            name: "TributaryTracing",
            dependencies: [
                "TributaryCore", "TributaryEngine",
                .product(name: "OTel", package: "swift-otel"),
                .product(name: "Tracing", package: "swift-distributed-tracing"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strict
        ),
        .executableTarget(name: "tributary", dependencies: ["TributaryCLI", "TributaryDemo", "TributaryTracing"], swiftSettings: strict),
        // Release-build benchmarks: `swift run -c release tributary-bench <suite>` (docs/BENCHMARKS.md).
        .executableTarget(
            name: "tributary-bench",
            dependencies: [
                "TributaryCore", "TributaryStore", "TributarySQLite", "TributaryPostgres", "TributaryEngine", "TributaryServer", "TributaryChaos",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "GRDBSQLite", package: "GRDB.swift"),
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
            ],
            swiftSettings: strict
        ),

        // The chaos run (`tributary-bench chaos`, and a short one in the test suite): real `tributary serve`
        // processes killed, frozen and cut off from a restarted PostgreSQL while the API changes
        // everything, checked afterwards against the provider's truth. Not part of any product.
        .target(
            name: "TributaryChaos",
            dependencies: [
                "TributaryCore", "TributaryStore", "TributarySQLite", "TributaryPostgres", "TributaryDemo",
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
            ],
            swiftSettings: strict
        ),
        // Test support shared by the test targets: a fresh store of each kind (SQLite file, PostgreSQL database).
        .target(
            name: "TributaryTestSupport",
            dependencies: [
                "TributaryCore", "TributaryStore", "TributarySQLite", "TributaryPostgres", "TributaryChaos",
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Tests/Support",
            swiftSettings: strict
        ),
        .testTarget(
            name: "TributaryCoreTests",
            dependencies: ["TributaryCore", "TributaryTestSupport", .product(name: "PropertyBased", package: "swift-property-based")],
            swiftSettings: strict),
        // The store's pure rules (fencing, run starts and ends, expiry, next runs, lifecycle changes), without a database.
        .testTarget(
            name: "TributaryRulesTests",
            dependencies: ["TributaryCore", "TributaryStore", .product(name: "PropertyBased", package: "swift-property-based")], swiftSettings: strict),
        .testTarget(
            name: "TributaryStoreTests",
            dependencies: [
                "TributaryCore", "TributaryStore", "TributarySQLite", "TributaryPostgres", "TributaryTestSupport",
                .product(name: "PropertyBased", package: "swift-property-based"),
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "PostgresNIO", package: "postgres-nio"),
            ],
            swiftSettings: strict
        ),
        .testTarget(
            name: "TributaryEngineTests",
            dependencies: [
                "TributaryCore", "TributaryStore", "TributarySQLite", "TributaryPostgres", "TributaryTestSupport", "TributaryEngine", "TributaryDemo",
                .product(name: "PropertyBased", package: "swift-property-based"),
                .product(name: "InMemoryTracing", package: "swift-distributed-tracing"),
                .product(name: "Tracing", package: "swift-distributed-tracing"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdTesting", package: "hummingbird"),
            ],
            swiftSettings: strict
        ),
        .testTarget(
            name: "TributaryServerTests",
            dependencies: [
                "TributaryCore", "TributaryStore", "TributarySQLite", "TributaryPostgres", "TributaryTestSupport", "TributaryEngine", "TributaryServer",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdTesting", package: "hummingbird"),
                // The dashboard's browser test drives Chromium through chromedriver's WebDriver HTTP API.
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            swiftSettings: strict
        ),
        .testTarget(
            name: "TributaryCLITests",
            dependencies: [
                "TributaryCLI", "TributaryCore", "TributarySQLite", "TributaryPostgres", "TributaryTestSupport", "TributaryStore", "TributaryDemo",
                "TributaryChaos",
                // The hostile-input process test reads the dashboard as a browser would (its session cookie, no redirects followed).
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdTesting", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
    ]
)
