// The umbrella module for packages that build on Tributary: `import Tributary` brings the
// sync-function API, the stores, the engine and the command line.
@_exported import TributaryCLI
@_exported import TributaryCore
@_exported import TributaryEngine
@_exported import TributarySQLite
@_exported import TributaryServer
@_exported import TributaryStore
