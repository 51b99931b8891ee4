#!/usr/bin/env python3
"""Deliberately broken builds: applies each breakage below to the source, runs the tests that must
catch it, restores the source, and reports CAUGHT or NOT CAUGHT (exit 1 if any is not caught).

    python3 tests/support/broken_builds.py          # every breakage (~5 min)
    python3 tests/support/broken_builds.py jwt      # those whose name contains "jwt"

This is how SECURITY.md's claim "each attack test fails against a broken build" is checked. Each
breakage names the exact source text it replaces; if the code moved, the script says so instead of
testing nothing. Run it from a clean tree: it rewrites files under src/ while it runs.
"""
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# (name, [(file, old text, new text)], [(test binary: "lib" or "integration", test filter)])
BREAKAGES = [
    ("identity: '_' spellings not folded",
     [("src/http/headers.rs", ".all(|(want, got)| want == if got == b'_' { b'-' } else { got })",
       ".all(|(want, got)| want == got)")],
     [("integration", "proxy::spoofed_identity_headers_never_reach_the_upstream_on_any_auth_mode"),
      ("lib", "headers::properties")]),
    # "Connection applied after the identity is set" no longer builds: set_gateway_owned takes the
    # proof remove_hop_by_hop returns (a compile_fail doc test shows the proof cannot be forged).
    ("hop-by-hop: names matched by length alone",
     [("src/http/headers.rs", ".position(|hop| hop.len() == name.len() && *hop == name)",
       ".position(|hop| hop.len() == name.len())")],
     [("lib", "headers::")]),
    ("hop-by-hop: what the scan found is never removed",
     [("src/http/headers.rs", "            present[index] = true;\n            any = true;\n",
       "            present[index] = true;\n")],
     [("lib", "headers::"), ("integration", "proxy::")]),
    ("revocation: a token found not revoked stays so after a logout",
     [("src/session.rs", "        MEMORY_REVOCATIONS.fetch_add(1, Ordering::Release);\n", "")],
     [("integration", "sessions::logout_revokes_the_token_and_its_login"),
      ("lib", "session::tests::a_not_revoked_memo_holds_until_the_next_revocation")]),
    ("token cache: a thread's recent verifications outlive a key change",
     [("src/per_thread.rs", "(self.owner == owner).then_some(&self.value)", "Some(&self.value)")],
     [("lib", "token::tests::a_threads_recent_verification_is_never_another_key_sets"),
      ("lib", "token::tests::rotation_keeps_old_tokens_until_the_old_key_is_removed")]),
    ("token cache: a thread's recent verifications matched by slot, not by the whole token",
     [("src/token/cache.rs", "(fresh && recent.token.as_bytes() == token)", "fresh")],
     [("lib", "token::tests::tokens_sharing_a_threads_slot_each_get_their_own_answer")]),
    ("token cache: a thread's recent verifications outlive the token",
     [("src/token/cache.rs", "let fresh = now < recent.forget_at;", "let fresh = true || now < recent.forget_at;")],
     [("lib", "token::tests::a_remembered_token_is_refused_once_it_expires")]),
    ("forwarding: every peer trusted",
     [("src/http/trust.rs", "        self.networks.iter().any(|network| network.contains(&peer))",
       "        let _ = peer;\n        true")],
     [("integration", "trusted_proxies::x_forwarded_uri_from_an_untrusted_peer_is_ignored"),
      ("integration", "trusted_proxies::forwarding_headers_from_an_untrusted_peer_are_replaced")]),
    ("forwarding: left-most X-Forwarded-For believed",
     [("src/http/trust.rs", "for entry in chain.iter().rev() {", "for entry in chain.iter() {")],
     [("integration", "rate_limits::behind_a_trusted_proxy_each_forwarded_client_has_its_own_bucket")]),
    ("path: escapes of unreserved characters not decoded",
     [("src/http/path.rs", "                    _ if is_unreserved(value) => out.push(char::from(value)),\n", "")],
     [("integration", "paths::traversal_out_of_a_public_prefix_is_judged_as_the_target_path"),
      ("lib", "routes::tests::the_route_judged_is_the_route_the_upstream_sees"),
      ("lib", "path::tests::a_normalized_path_has_no_dot_segment_even_when_decoded")]),
    ("path: double encoding checked on the input only (a fuzzer find)",
     [("src/http/path.rs", "    if is_double_encoded(out.as_bytes()) {", "    if is_double_encoded(raw.as_bytes()) {")],
     [("integration", "paths::unsafe_paths_are_400_and_reach_no_upstream"),
      ("integration", "fuzz_corpus::path_inputs_keep_their_invariants")]),
    ("jwt: an unknown kid falls back to the signing key",
     [("src/token.rs", '.ok_or(GatewayError::InvalidToken("unknown key id"))?,',
       ".unwrap_or(&self.verifying[0]),")],
     [("integration", "token_attacks::kid_injection_names_no_key_and_is_refused")]),
    ("jwt: crit ignored",
     [("src/token.rs", "        if header.crit.is_some() {", "        if header.crit.is_some() && false {")],
     [("integration", "token_attacks::critical_header_extensions_are_refused")]),
    ("jwt: any HMAC algorithm accepted for the HS256 key",
     [("src/token.rs", "    let mut validation = Validation::new(algorithm);\n",
       "    let mut validation = Validation::new(algorithm);\n    if algorithm == Algorithm::HS256 {\n"
       "        validation.algorithms = vec![Algorithm::HS256, Algorithm::HS384, Algorithm::HS512];\n    }\n")],
     [("integration", "tokens::another_algorithm_with_the_same_key_is_refused")]),
    ("jwt: claims decoded straight into the struct (a fuzzer find)",
     [("src/token.rs", "let claims = jsonwebtoken::decode::<serde_json::Value>(token, &key.decoding, validation)",
       "let claims: VerifiedClaims = jsonwebtoken::decode::<VerifiedClaims>(token, &key.decoding, validation)"),
      ("src/token.rs", "        let claims: VerifiedClaims = serde_json::from_value(claims)\n"
       "            .map_err(|_| GatewayError::InvalidToken(\"malformed token\"))?;\n", "")],
     [("integration", "fuzz_corpus::token_inputs_keep_their_invariants")]),
    ("smuggling: malformed header lines skipped instead of refused",
     [("src/server/connection.rs", "            .keep_alive(true);\n",
       "            .keep_alive(true)\n            .ignore_invalid_headers(true);\n")],
     [("integration", "smuggling::obs_fold_and_bare_cr_are_400_and_reach_no_upstream")]),
    ("resources: no header read timeout (slowloris)",
     [("src/server/connection.rs",
       "                if timer.as_mut().poll(cx).is_ready() {",
       "                if timer.as_mut().poll(cx).is_ready() && false {")],
     [("integration", "lifecycle::a_client_too_slow_to_send_its_headers_is_disconnected_while_others_are_served"),
      ("integration", "keepalive::a_later_request_head_left_incomplete_is_cut_at_the_header_read_timeout")]),
    ("resources: only a connection's first request head timed",
     [("src/server/connection.rs",
       "            if head_due.is_none() && activity.reading_head() {",
       "            if head_due.is_none() && activity.reading_head() && false {")],
     [("integration", "keepalive::a_later_request_head_left_incomplete_is_cut_at_the_header_read_timeout"),
      ("integration", "keepalive::a_later_request_head_sent_byte_by_byte_is_cut_at_the_header_read_timeout")]),
    ("secrets: the session_key in the login answer",
     [("src/endpoints/login.rs", "    let answer = token_answer(&issued, &identity);\n",
       "    let mut answer = token_answer(&issued, &identity);\n"
       "    answer[\"session_key\"] = serde_json::Value::String(session.session_key.expose().to_string());\n")],
     [("integration", "secrets::no_secret_or_session_key_appears_in_answers_or_metrics")]),
    ("keep-alive: parked with part of a request head read",
     [("src/server/keepalive.rs", "            && !self.read_since_flush.load(Relaxed)\n", "")],
     [("integration", "keepalive::request_heads_split_across_pauses_are_served_whole")]),
    ("keep-alive: parked mid-response",
     [("src/server/keepalive.rs",
       "    pub(super) fn is_idle(&self) -> bool {\n        self.in_flight.load(Relaxed) == 0\n            && ",
       "    pub(super) fn is_idle(&self) -> bool {\n        ")],
     [("integration", "keepalive::a_response_streamed_with_pauses_is_not_cut")]),
    ("keep-alive: bytes read while answering assumed to be the body",
     [("src/server/keepalive.rs",
       "if self.responded.load(Relaxed) || self.in_flight.load(Relaxed) > 0 && count > allowance {",
       "if false {")],
     [("integration", "keepalive::a_request_begun_while_the_previous_was_answered_is_served_whole")]),
    ("auth: the recent-token shortcut reads a token after any scheme",
     [("src/auth.rs", '    if !scheme.eq_ignore_ascii_case(b"bearer ") {',
       '    if !scheme[..6].eq_ignore_ascii_case(b"bearer") {')],
     [("lib", "auth::tests::the_shortcut_")]),
    ("paths: an absolute-form request target forwarded as it came",
     [("src/proxy.rs", "                && parts.uri.scheme().is_none()\n                && parts.uri.authority().is_none()\n", "")],
     [("integration", "paths::an_absolute_form_target_is_forwarded_in_origin_form")]),
    ("paths: a rewritten query ignored when the request target is reused",
     [("src/proxy.rs", "                && parts.uri.query() == query.as_deref();", ";")],
     [("integration", "websocket::the_configured_query_parameter_carries_the_token_and_is_removed")]),
    # Issue 27: the second round of attacks, one breakage per defect.
    ("upgrade: any Upgrade value forwarded (the h2c tunnel)",
     [("src/http/websocket.rs", "(values.next().is_none() && is_websocket(protocol)).then(|| protocol.clone())",
       "Some(protocol.clone())")],
     [("integration", "tunnels::an_h2c_upgrade_is_served_as_plain_http_and_opens_no_tunnel"),
      ("lib", "websocket::tests::only_websocket_upgrades_are_upgrades")]),
    ("upgrade: a 101 to another protocol than asked relayed",
     [("src/proxy.rs", "            .filter(websocket::is_websocket);", "            ;")],
     [("integration", "tunnels::a_switch_to_another_protocol_than_asked_is_a_502")]),
    ("deny-list: a full deny-list drops an entry instead of refusing",
     [("src/session/deny_list.rs",
       '            return Err(StoreError(\n                "the revocation deny-list is full (session.max_entries x 4 live logouts)".into(),\n            ));',
       "            let dropped = entries.keys().next().cloned().unwrap_or_default();\n            entries.remove(&dropped);")],
     [("integration", "revocations::a_flood_of_logouts_cannot_flush_a_revocation"),
      ("lib", "session::deny_list::tests::a_full_list_refuses_instead_of_dropping")]),
    ("deny-list: one entry per token instead of per login",
     [("src/endpoints/login/lifecycle.rs", "    if let (None, Some(jti)) = (&verified.sid, &verified.jti) {",
       "    if let Some(jti) = &verified.jti {")],
     [("integration", "revocations::a_flood_of_logouts_cannot_flush_a_revocation")]),
    ("refresh: a replaced login's token refreshed",
     [("src/endpoints/login/lifecycle.rs", "        .filter(|session| session.sid == sid)\n", "")],
     [("integration", "revocations::a_refresh_needs_the_tokens_own_login_to_be_current")]),
    ("refresh: no per-user limit",
     [("src/endpoints/login/lifecycle.rs",
       "    state\n        .limits\n        .check_refresh(appid, &verified.identity.openid, &state.metrics)?;\n", "")],
     [("integration", "revocations::refreshes_are_limited_per_user")]),
    ("body: no read timeout on the gateway's own endpoints (body slowloris)",
     [("src/client.rs", "tokio::time::timeout(server.body_read_timeout, limited.collect())",
       "tokio::time::timeout(std::time::Duration::MAX, limited.collect())")],
     [("integration", "body_limits::a_body_that_never_comes_is_cut_with_408_and_frees_its_connection")]),
    ("body: no timer between the chunks of a forwarded body",
     [("src/proxy/client_body.rs",
       "Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(ClientBodyError::Stalled)))),",
       "Poll::Ready(()) => Poll::Pending,")],
     [("integration", "body_limits::a_forwarded_body_that_stalls_is_cut_with_408")]),
    ("body: a client's malformed body blamed on the upstream (502)",
     [("src/proxy.rs", "if let Some(client) = cause.downcast_ref::<ClientBodyError>() {",
       "if let Some(client) = cause.downcast_ref::<ClientBodyError>().filter(|_| false) {")],
     [("integration", "request_heads::a_malformed_chunked_body_is_the_clients_400")]),
    ("h2: no cap on requests in flight to upstreams",
     [("src/upstream.rs", "                .try_take(self.max_in_flight)", "                .try_take(usize::MAX)")],
     [("integration", "body_limits::http2_streams_cannot_multiply_upstream_connections")]),
    ("h2: hyper's default concurrent streams advertised",
     [("src/server/connection.rs", "            .max_concurrent_streams(server.http2_max_concurrent_streams);",
       "            ;")],
     [("integration", "body_limits::http2_streams_cannot_multiply_upstream_connections")]),
    ("tunnels: the connection slot released when the connection task ends",
     [("src/http/websocket.rs", "        let _held = (guards.drain, guards.slot);",
       "        let _held = guards.drain;\n        drop(guards.slot);")],
     [("integration", "tunnels::open_tunnels_count_against_max_connections")]),
    ("tunnels: never closed when idle",
     [("src/http/websocket.rs", "            () = activity.idle_for(idle_timeout) => {",
       "            () = std::future::pending::<()>() => {")],
     [("integration", "tunnels::an_idle_tunnel_is_closed_and_a_busy_one_kept")]),
    ("framing: chunked applied twice accepted",
     [("src/http/headers/request_head.rs", "        if chunked > 1 {", "        if chunked > 2 {")],
     [("integration", "request_heads::chunked_applied_twice_is_400_and_reaches_no_upstream"),
      ("lib", "headers::request_head::tests::chunked_applied_twice_is_refused")]),
    ("auth: an Authorization that is not a Bearer credential counts as no token",
     [("src/auth.rs",
       '        return Err(GatewayError::InvalidToken(\n            "the Authorization header is not a Bearer credential",\n        ));',
       "        return Ok(None);")],
     [("integration", "request_heads::an_authorization_that_is_not_a_bearer_credential_is_401")]),
    ("host: Host wins over the target's authority",
     [("src/http/headers/request_head.rs",
       "                .eq_ignore_ascii_case(authority.as_str().as_bytes())",
       "                .eq_ignore_ascii_case(host.as_bytes())"),
      ("src/http/headers/request_head.rs", "    match uri.authority() {", "    match None::<&http::uri::Authority> {")],
     [("integration", "request_heads::the_authority_of_the_target_wins_over_host")]),
    ("redis: an evicting maxmemory-policy accepted",
     [("src/session/redis.rs", "            Ok([_, policy]) if policy == REQUIRED_EVICTION_POLICY => Ok(()),",
       "            Ok(_) => Ok(()),")],
     [("integration", "redis::a_redis_that_may_evict_revocations_stops_the_gateway_at_start")]),
    # Issue 28: one authorization step for the proxy, forward-auth and WebSocket upgrades.
    ("authorization: the route's per-user rate limit skipped",
     [("src/auth.rs", "    if let Some(route) = route {\n        state\n            .limits",
       "    if let Some(route) = route.filter(|_| false) {\n        state\n            .limits")],
     [("integration", "forward_auth::a_routes_apps_and_rate_limit_are_enforced_alike_by_proxy_and_forward_auth")]),
    # Issue 34: durable sessions and logouts.
    ("durability: the memory store as the default",
     [("src/config/session.rs", 'unwrap_or("embedded")', 'unwrap_or("memory")')],
     [("integration", "durability::answered_logouts_and_sessions_survive_a_restart")]),
    ("durability: a write-behind store (answered at once, written a little later)",
     [("src/session/embedded.rs",
       "        outcome\n            .await\n            .map_err(|_| StoreError(\"the session store's writer has stopped\".into()))?\n",
       "        drop(outcome);\n        Ok(T::default())\n"),
      ("src/session/embedded.rs", "    async fn write<T>(", "    async fn write<T: Default>("),
      ("src/session/embedded/writer.rs", "            self.commit(batch);",
       "            std::thread::sleep(std::time::Duration::from_millis(50));\n            self.commit(batch);")],
     [("integration", "durability::every_answered_logout_survives_a_sigkill_during_a_burst")]),
    ("durability: tokens from before a lost store accepted",
     [("src/auth.rs", "    if verified.issued_before(state.sessions.generation()) {",
       "    if false && verified.issued_before(state.sessions.generation()) {")],
     [("integration", "durability::a_deleted_database_refuses_every_earlier_token"),
      ("integration", "redis::a_flushed_or_restarted_empty_redis_refuses_every_earlier_token")]),
    ("wechat_api: callers outside loopback and allow served",
     [("src/endpoints/wechat_api.rs", "if !ip.is_loopback() && !api.allow.contains(ip) {",
       "if false && !ip.is_loopback() && !api.allow.contains(ip) {")],
     [("integration", "wechat_api::only_loopback_and_allowed_networks_may_call")]),
    ("wechat_api: token-handing APIs passed on",
     [("src/endpoints/wechat_api.rs", '    last.ends_with("token")', "    false")],
     [("integration", "wechat_api::token_apis_unknown_apps_and_other_methods_are_refused"),
      ("lib", "endpoints::wechat_api::tests")]),
    ("wechat_api: the caller's own access_token kept",
     [("src/wechat/forward.rs", "decoded.replace('+', \" \") != \"access_token\"", "true")],
     [("integration", "wechat_api::calls_reach_wechat_unchanged_with_the_gateways_token"),
      ("lib", "wechat::forward::tests")]),
    ("wechat_api: an answer carrying the access_token passed on",
     [("src/wechat/forward.rs", "if contains(&read, access_token.expose().as_bytes()) {",
       "if false && contains(&read, access_token.expose().as_bytes()) {")],
     [("integration", "wechat_api::calls_reach_wechat_unchanged_with_the_gateways_token")]),
    ("push: msg_signature not checked",
     [("src/endpoints/push.rs", "if !crypto::signature_matches(&query.msg_signature, &parts) {",
       "if false && !crypto::signature_matches(&query.msg_signature, &parts) {")],
     [("integration", "push::pushes_of_every_mode_and_format_are_verified_decrypted_and_forwarded_once")]),
    ("padding: any PKCS#7 padding accepted",
     [("src/wechat/pkcs7.rs", ".all(|&byte| usize::from(byte) == count)", ".all(|_| true)")],
     [("integration", "push::pushes_of_every_mode_and_format_are_verified_decrypted_and_forwarded_once"),
      ("lib", "pkcs7")]),
    ("push and Baidu data: another app's (appid, AppKey) accepted",
     [("src/wechat/push.rs", "if !bool::from(trailer.ct_eq(owner.as_bytes())) {",
       "if false && !bool::from(trailer.ct_eq(owner.as_bytes())) {")],
     [("integration", "push::pushes_of_every_mode_and_format_are_verified_decrypted_and_forwarded_once"),
      ("lib", "what_the_mock_encrypts_the_gateway_decrypts"),
      ("lib", "wechat::baidu::tests::another_app_key_or_session_key_is_refused"),
      ("integration", "platforms::baidu_user_data_decrypts_with_its_own_scheme")]),
    ("push: stale timestamps accepted",
     [("src/endpoints/push.rs", "if unix_now().abs_diff(sent) > push.max_age.as_secs() {",
       "if false && unix_now().abs_diff(sent) > push.max_age.as_secs() {")],
     [("integration", "push::pushes_of_every_mode_and_format_are_verified_decrypted_and_forwarded_once")]),
    ("push: a failed delivery stays claimed (WeChat's retry dropped)",
     [("src/endpoints/push.rs", "        if claimed {", "        if false && claimed {")],
     [("integration", "push::a_failed_delivery_is_retried_by_wechat")]),
    ("session check: decryption tried with a key found stale",
     [("src/endpoints/decrypt.rs", "        return Err(GatewayError::SessionKeyStale);\n", "")],
     [("integration", "session_check::a_replaced_session_key_is_found_stale")]),
    ("platforms: a client's X-Platform not stripped",
     [("src/http/headers.rs", '    "x-platform",\n', '    "x-not-owned",\n')],
     [("integration", "platforms::qq_and_douyin_logins_reach_the_upstream_with_their_platform"),
      ("lib", "headers::")]),
    ("platforms: a token's unknown platform taken as WeChat",
     [("src/token.rs", 'Platform::named(name).ok_or(GatewayError::InvalidToken("unknown platform"))?',
       "Platform::named(name).unwrap_or_default()")],
     [("lib", "token::tests::the_platform_claim_round_trips_and_an_unknown_one_is_refused")]),
    ("platforms: data without a watermark accepted for every platform",
     [("src/endpoints/decrypt.rs", "(Watermark::Missing, Platform::Douyin | Platform::Kuaishou)",
       "(Watermark::Missing, _)")],
     [("integration", "platforms::douyin_user_data_decrypts_with_or_without_a_watermark")]),
    ("alipay: an answer believed without its signature",
     [("src/wechat/alipay.rs", "    if signed\n        && !envelope", "    if false\n        && !envelope")],
     [("lib", "wechat::alipay::tests::a_tampered_or_unsigned_answer_is_refused"),
      ("integration", "platforms::alipay_logins_are_signed_and_their_answers_verified")]),
    ("alipay: the request signed over another string than Alipay's",
     [("src/wechat/alipay.rs", "let signature = sign(&keys.signing, &signing_string(&params));",
       "let signature = sign(&keys.signing, &format!(\"{}&\", signing_string(&params)));")],
     [("integration", "platforms::alipay_logins_are_signed_and_their_answers_verified")]),
    ("alipay: a phone answer decrypted without its signature checked",
     [("src/wechat/alipay/phone.rs", "if !verified(&keys.verifying, &signed, &answer.sign) {",
       "if false && !verified(&keys.verifying, &signed, &answer.sign) {")],
     [("integration", "platforms::alipay_phone_numbers_are_verified_then_decrypted")]),
    ("platform tokens: a QQ token fetched alone when the store is down",
     [("src/access_token.rs", "    matches!(app.platform, Platform::Qq | Platform::Baidu)", "    false")],
     [("integration", "platform_tokens::a_qq_token_has_one_owner_in_the_fleet_and_none_without_the_store")]),
    ("platform tokens: QQ's getToken passed through the listener",
     [("src/endpoints/wechat_api.rs", "    last.ends_with(\"token\")",
       "    last == \"token\" || last.ends_with(\"_token\")")],
     [("integration", "platform_tokens::qq_and_baidu_server_apis_get_their_own_platforms_token"),
      ("lib", "endpoints::wechat_api::tests::token_handing_apis_are_recognized")]),
    ("platform tokens: a Baidu login issued without the unionid it was configured to fetch",
     [("src/endpoints/login.rs", "Some(baidu) if baidu.fetch_unionid =>", "Some(baidu) if baidu.fetch_unionid && false =>")],
     [("integration", "platform_tokens::baidu_logins_fetch_the_unionid_when_configured")]),
    ("identity: an assertion accepted as a client token",
     [("src/token.rs", '.is_some_and(|typ| !typ.eq_ignore_ascii_case("JWT"))', ".is_some_and(|_| false)")],
     [("integration", "assertions::every_forwarded_request_carries_an_assertion_for_its_route")]),
    ("identity: client copies of configured header names kept",
     [("src/http/headers.rs", "is_gateway_owned(name) || names.owns(name)", "is_gateway_owned(name)")],
     [("integration", "assertions::configured_header_names_are_set_and_client_copies_stripped"),
      ("lib", "headers::identity::tests::configured_names_are_set_and_their_client_copies_stripped")]),
    ("identity: the client's token forwarded despite forward_authorization = false",
     [("src/proxy.rs", "                parts.headers.remove(AUTHORIZATION);\n", "")],
     [("integration", "assertions::the_clients_token_is_kept_from_upstreams_that_ask_for_it"),
      ("integration", "assertions::a_websocket_upgrade_keeps_the_token_from_the_upstream_too")]),
    ("identity: an assertion outliving the client token",
     [("src/token/assertion.rs", "now.saturating_add(of.ttl_secs).min(verified.exp)", "now.saturating_add(of.ttl_secs)")],
     [("integration", "assertions::an_assertion_never_outlives_the_client_token")]),
    ("wxgate-verify: an assertion's typ not checked",
     [("wxgate-verify/src/verifier.rs", "(Some(expected), Some(typ)) => typ == expected,",
       "(Some(_), Some(_)) => true,")],
     [("lib", "verifier::tests::what_is_not_a_fresh_assertion_for_this_audience_is_refused"),
      ("integration", "backend_verify::the_axum_backend_serves_only_what_came_through_the_gateway")]),
    ("wxgate-verify: the JWKS fetched once only (no key rotation)",
     [("wxgate-verify/src/keys.rs", "        if !recently {", "        if !recently && self.never_fetched() {")],
     [("integration", "backend_verify::a_new_signing_key_is_picked_up_from_the_jwks_without_a_restart")]),
    ("identity: an assertion signed anew for every request",
     [("src/token/assertion.rs", ".find(|slot| slot.audience == audience && now < slot.renew_at)",
       ".find(|slot| slot.audience == audience && now < slot.renew_at && false)")],
     [("integration", "assertions::every_forwarded_request_carries_an_assertion_for_its_route")]),
]


def run_tests(kind, test_filter):
    binary = ["--lib"] if kind == "lib" else ["--test", "integration"]
    result = subprocess.run(["cargo", "test", "-q", *binary, test_filter],
                            cwd=ROOT, capture_output=True, text=True)
    output = result.stdout + result.stderr
    if "could not compile" in output:
        return "BUILD ERROR (the breakage no longer applies cleanly)"
    # One summary per crate of the workspace whose tests ran; some test must have run in one.
    summaries = re.findall(r"test result: \w+\. (\d+) passed; (\d+) failed", output)
    if not any(passed != "0" or failed != "0" for passed, failed in summaries):
        return "NO TEST RAN (renamed?)"
    return "CAUGHT" if result.returncode != 0 else "NOT CAUGHT"


def main():
    wanted = sys.argv[1:]
    failures = 0
    # Property tests save failing cases next to the code; only the ones already kept stay.
    saved = ROOT / "proptest-regressions"
    kept = {path: path.read_text() for path in saved.rglob("*.txt")}
    for name, edits, tests in BREAKAGES:
        if wanted and not any(word in name for word in wanted):
            continue
        originals = {}
        try:
            for file, old, new in edits:
                path = ROOT / file
                originals.setdefault(path, path.read_text())
                text = path.read_text()
                if text.count(old) != 1:
                    raise SystemExit(f"{name}: {file} no longer contains the text to break")
                path.write_text(text.replace(old, new))
            print(name)
            for kind, test_filter in tests:
                verdict = run_tests(kind, test_filter)
                failures += verdict != "CAUGHT"
                print(f"    {verdict:11} {test_filter}", flush=True)
        finally:
            for path, text in originals.items():
                path.write_text(text)
    for path in saved.rglob("*.txt"):
        if path in kept:
            path.write_text(kept[path])
        else:
            path.unlink()
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
