// swift-tools-version:6.2
// An application built on Tributary: its own sync function, the stock CLI.
import Foundation
import PackageDescription

// A path dependency's identity is its directory name; resolve it so the example builds from any checkout folder.
let tributaryPath = "../.."
let tributaryIdentity = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
    .appendingPathComponent(tributaryPath).standardizedFileURL.lastPathComponent.lowercased()

let package = Package(
    name: "OrdersApp",
    platforms: [.macOS(.v15)],
    dependencies: [.package(path: tributaryPath)],
    targets: [
        .target(name: "OrdersApp", dependencies: [.product(name: "Tributary", package: tributaryIdentity)]),
        .executableTarget(name: "orders-app", dependencies: ["OrdersApp", .product(name: "Tributary", package: tributaryIdentity)]),
        .testTarget(name: "OrdersAppTests", dependencies: ["OrdersApp", .product(name: "Tributary", package: tributaryIdentity)]),
    ]
)
