import OrdersApp
import Tributary

/// The application's binary: Tributary's CLI with the app's own sync functions and actions.
///
///     swift run orders-app dryrun products --connection acme --variant spring --config tributary.yaml
@main
struct App {
    static func main() async {
        await TributaryCLI.main(functions: [CatalogSync(client: InMemoryCatalog(count: 250))], actions: [ProductLookup()])
    }
}
