import Foundation
import TributaryCore
import TributaryStore

extension ProviderAccess {
    /// Sends the integration's verification request (`auth.verification`) with credentials an end
    /// user typed on the Connect page, before they are saved: one attempt, no retries.
    /// - Returns: nil when the provider accepted them (2xx); otherwise words for the end user.
    public func verify(_ credentials: JSONObject, integration: IntegrationConfig) async -> String? {
        guard let verification = integration.verification else { return nil }
        do {
            let response = try await send(
                ProviderRequest(ProviderRequest.Method(rawValue: verification.method) ?? .GET, verification.path, headers: [("Accept", "application/json")]),
                credentials: credentials, integration: integration)
            if response.isSuccess { return nil }
            if response.status == 401 || response.status == 403 {
                return "\(integration.provider) did not accept these credentials (HTTP \(response.status)). Check them and try again."
            }
            return "\(integration.provider) could not check these credentials (HTTP \(response.status)). Try again in a moment."
        } catch let error as TributaryError {
            return error.message
        } catch {
            return "\(integration.provider) could not be reached to check these credentials. Try again in a moment."
        }
    }

    /// Sends `request` with credentials that are not stored yet (being verified or validated): one
    /// attempt, no refresh, no retries.
    /// - Throws: `provider_error` for a request Tributary refuses to send; the client's error on a
    ///   network failure or timeout.
    public func send(_ request: ProviderRequest, credentials: JSONObject, integration: IntegrationConfig) async throws -> ProviderResponse {
        let target = try Self.url(for: request, baseURL: integration.baseURL, integration: integration.providerConfigKey)
        let (url, headers) = try Self.authorize(target, request.headers, integration.auth, credentials)
        let limit = policy.responseLimit(for: request)
        var response = try await http.perform(
            method: request.method, url: url, headers: headers, body: request.body, timeout: policy.timeout, maxBytes: limit.bytes, limitName: limit.setting)
        response.url = target.string
        response.credentialQueryNames = integration.auth.credentialQueryNames
        return response
    }

    /// Exchanges an authorization code at the integration's token URL (RFC 6749 §4.1.3, with the
    /// PKCE `code_verifier` when one was sent) and returns the connection's credentials:
    /// `{type: OAUTH2, access_token, refresh_token?, expires_at?, raw}`.
    /// - Throws: `invalid_credentials` when the provider refuses the code; ``ProviderUnavailable``
    ///   when its token endpoint cannot be reached.
    public func exchangeAuthorizationCode(_ code: String, verifier: String?, redirectURI: String, integration: IntegrationConfig) async throws
        -> JSONObject
    {
        guard case .oauth2(let tokenURL, let clientID, let clientSecret) = integration.auth else {
            throw TributaryError(.invalidCredentials, "Integration '\(integration.providerConfigKey)' does not use OAuth 2.")
        }
        var form = [
            ("grant_type", "authorization_code"), ("code", code), ("redirect_uri", redirectURI), ("client_id", clientID),
            ("client_secret", clientSecret.value),
        ]
        if let verifier { form.append(("code_verifier", verifier)) }
        let answer = try await CredentialVault.tokenEndpoint(tokenURL, form: form, http: http, policy: policy, refusal: "refused the authorization code")
        var credentials = CredentialVault.applying(answer, to: ["type": "OAUTH2"], tokenField: "access_token")
        credentials[CredentialVault.refreshedAtField] = nil
        return credentials
    }
}
