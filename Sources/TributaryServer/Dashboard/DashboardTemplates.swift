import Foundation
import HTTPTypes
import Hummingbird
import Mustache
import NIOCore

/// The dashboard's Mustache templates and static assets, loaded once from the module's resources
/// (`Dashboard/Templates/*.mustache`, `Dashboard/Assets/*`), and the responses made from them.
struct DashboardTemplates: Sendable {
    let library: MustacheLibrary
    /// File name → (bytes, content type).
    let assets: [String: Asset]

    struct Asset: Sendable {
        let bytes: [UInt8]
        let contentType: String
    }

    /// Loads every template and asset; throws when the build lacks them or a template does not parse.
    static func load() throws -> DashboardTemplates {
        guard let templates = Bundle.module.url(forResource: "Templates", withExtension: nil),
            let assetFolder = Bundle.module.url(forResource: "Assets", withExtension: nil)
        else { throw DashboardError.missingResources }
        var library = MustacheLibrary()
        for file in try FileManager.default.contentsOfDirectory(atPath: templates.path) where file.hasSuffix(".mustache") {
            let text = try String(contentsOf: templates.appendingPathComponent(file), encoding: .utf8)
            do {
                try library.register(text, named: String(file.dropLast(".mustache".count)))
            } catch {
                throw DashboardError.badTemplate(file, "\(error)")
            }
        }
        var assets: [String: Asset] = [:]
        for file in try FileManager.default.contentsOfDirectory(atPath: assetFolder.path) {
            let type: String
            switch (file as NSString).pathExtension {
            case "css": type = "text/css; charset=utf-8"
            case "js": type = "text/javascript; charset=utf-8"
            default: continue
            }
            assets[file] = Asset(bytes: Array(try Data(contentsOf: assetFolder.appendingPathComponent(file))), contentType: type)
        }
        return DashboardTemplates(library: library, assets: assets)
    }

    /// Renders `template` with `view` as an HTML page.
    func page(_ template: String, _ view: Any, status: HTTPResponse.Status = .ok) -> Response {
        let html = library.render(view, withTemplate: template) ?? "<!doctype html><title>Tributary</title><p>Template \(template) is missing."
        return Response(status: status, headers: Self.headers(contentType: "text/html; charset=utf-8"), body: ResponseBody(byteBuffer: ByteBuffer(string: html)))
    }

    /// A static asset, cached briefly by the browser.
    func asset(_ name: String) -> Response? {
        guard let asset = assets[name] else { return nil }
        var headers = Self.headers(contentType: asset.contentType)
        headers[.cacheControl] = "private, max-age=300"
        return Response(status: .ok, headers: headers, body: ResponseBody(byteBuffer: ByteBuffer(bytes: asset.bytes)))
    }

    /// A `303 See Other` to `location` (after a form post, or to the login page).
    static func redirect(to location: String) -> Response {
        var headers = headers(contentType: "text/plain; charset=utf-8")
        headers[.location] = location
        return Response(status: .seeOther, headers: headers)
    }

    /// The headers of every dashboard response: no caching of pages with data on them, and a
    /// content security policy that allows only the dashboard's own style sheet and script.
    static func headers(contentType: String) -> HTTPFields {
        headers(contentType: contentType, connectSource: "'self'", formAction: "'self'", referrerPolicy: "same-origin")
    }

    /// The security headers of a server-rendered page (the dashboard's, the Connect page's): never
    /// cached, never framed, scripts and styles from this server only; `formAction` and
    /// `referrerPolicy` are the page's own (the Connect page sends no referrer: its URL holds a token).
    static func headers(contentType: String, connectSource: String?, formAction: String, referrerPolicy: String) -> HTTPFields {
        let connect = connectSource.map { " connect-src \($0);" } ?? ""
        return [
            .contentType: contentType,
            .cacheControl: "no-store",
            .contentSecurityPolicy:
                "default-src 'none'; style-src 'self'; script-src 'self';\(connect) img-src 'self'; form-action \(formAction); frame-ancestors 'none'; base-uri 'none'",
            HTTPField.Name("X-Content-Type-Options")!: "nosniff",
            HTTPField.Name("X-Frame-Options")!: "DENY",
            HTTPField.Name("Referrer-Policy")!: referrerPolicy,
        ]
    }
}

/// Why the dashboard cannot start.
enum DashboardError: Error, CustomStringConvertible {
    case missingResources
    case badTemplate(String, String)

    var description: String {
        switch self {
        case .missingResources: "The dashboard's templates are missing from this build (resource bundle of TributaryServer)."
        case .badTemplate(let file, let error): "Dashboard template \(file) does not parse: \(error)"
        }
    }
}
