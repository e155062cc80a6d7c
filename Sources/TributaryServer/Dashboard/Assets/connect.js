// Tributary Connect: the one piece of script the Connect page has. When the page that ends the flow
// was opened as a popup (window.open, as Nango's frontend does), it tells its opener the outcome
// with postMessage — Nango's legacy events AUTHORIZATION_SUCEEDED / AUTHORIZATION_FAILED — and
// closes. Without script, the page shows the outcome in words and nothing else is needed. (The
// page refuses to be framed, so there is no iframe hand-off.)
(function () {
  "use strict";
  var outcome = document.getElementById("outcome");
  if (!outcome) return;
  var event = outcome.getAttribute("data-event");
  var ok = event === "AUTHORIZATION_SUCEEDED";
  var data = ok
    ? { connectionId: outcome.getAttribute("data-connection-id"), providerConfigKey: outcome.getAttribute("data-provider-config-key") }
    : { authErrorType: outcome.getAttribute("data-error-type"), authErrorDesc: outcome.getAttribute("data-message") };
  if (window.opener && window.opener !== window) {
    window.opener.postMessage({ eventType: event, data: data }, "*");
    setTimeout(function () { window.close(); }, ok ? 800 : 4000);
  }
})();
