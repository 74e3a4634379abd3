# SPDX-License-Identifier: MIT
"""The HTTP routes (docs/contract.md §2, §3.6, §7 GET /status): built-in answers, errors, body
limit, idle timeout, keep-alive, CORS, request ids, extra channel routes, HTTPS."""
import os
import re
import socket
import time
import unittest

from util import (TEXT_BOT, assert_json_error, chunked_request, decode, error_lines, final_log,
                  https_request, log_lines_with_id, make_project, make_self_signed_cert,
                  request_on, run_to_exit, serve, shown_path, status_for_announced_body, temp_dir,
                  version)

REST = {"credentials.yml": "rest:\n"}

# A channel that logs from each step, so tests can see which steps ran and with which id.
TRACED = """\
local sb = require "switchboard"
local c = { name = "traced" }
function c.verify(req)
  sb.log.info("TRACED VERIFY ran")
  return true
end
function c.receive(req)
  sb.log.info("TRACED RECEIVE ran")
  return { { sender_id = "u", text = "hi" } }
end
return c
"""

ROUTED = """\
local c = { name = "routed" }
c.routes = {
  ["GET /set_webhook"] = function(req)
    return { json = { set = true, url = req.query.url } }
  end,
  ["PUT /thing"] = function(req)
    return { status = 201, json = { method = req.method } }
  end,
}
return c
"""

OVERRIDING = """\
local c = { name = "over" }
function c.receive(req) error("receive must not run when POST /webhook is overridden") end
c.routes = {
  ["GET /"] = function(req)
    return { body = "custom health", content_type = "text/plain" }
  end,
  ["POST /webhook"] = function(req)
    return { status = 202, headers = { ["x-handled-by"] = "route" }, json = { overridden = true } }
  end,
}
return c
"""


def json_error(test, status_headers_body, status, code):
    """Assert a JSON error answer {"error": code, "message": text} whose message is not empty;
    returns the decoded body."""
    doc = assert_json_error(test, status_headers_body, status, code)
    test.assertTrue(doc["message"], doc)
    return doc


class BuiltInRouteTests(unittest.TestCase):
    def test_root_says_hello_with_the_version(self):
        with serve(REST) as host:
            status, headers, body = host.request("GET", "/")
            self.assertEqual(status, 200)
            self.assertTrue(headers["content-type"].startswith("text/plain"), headers)
            self.assertEqual(body.decode(), "Hello from Switchboard: %s" % version())

    def test_channel_health_with_trailing_slash(self):
        with serve(REST) as host:
            status, headers, body = host.request("GET", "/webhooks/rest/")
            self.assertEqual(status, 200)
            self.assertTrue(headers["content-type"].startswith("application/json"), headers)
            self.assertEqual(decode(body), {"status": "ok"})

    def test_channel_health_without_trailing_slash(self):
        with serve(REST) as host:
            status, headers, body = host.request("GET", "/webhooks/rest")
            self.assertEqual(status, 200)
            self.assertTrue(headers["content-type"].startswith("application/json"), headers)
            self.assertEqual(decode(body), {"status": "ok"})

    def test_every_channel_has_a_health_route(self):
        with serve({"credentials.yml": "rest:\nrouted.lua:\n", "routed.lua": ROUTED}) as host:
            for name in ("rest", "routed"):
                self.assertEqual(host.request("GET", "/webhooks/%s/" % name)[0], 200, name)

    def test_post_webhook_without_trailing_slash(self):
        with serve(REST, bot=TEXT_BOT) as host:
            status, _, body = host.post_json("/webhooks/rest/webhook", {"sender": "u", "message": "hi"})
            self.assertEqual(status, 200, body)
            self.assertEqual(body, [{"recipient_id": "u", "text": "echo: hi"}])

    def test_post_webhook_with_trailing_slash(self):
        with serve(REST, bot=TEXT_BOT) as host:
            status, _, body = host.post_json("/webhooks/rest/webhook/", {"sender": "u", "message": "hi"})
            self.assertEqual(status, 200, body)
            self.assertEqual(body, [{"recipient_id": "u", "text": "echo: hi"}])


class ErrorAnswerTests(unittest.TestCase):
    def test_unknown_path_is_404_with_a_json_error(self):
        with serve(REST) as host:
            json_error(self, host.request("GET", "/no/such/thing"), 404, "not_found")

    def test_unknown_channel_is_404(self):
        with serve(REST) as host:
            json_error(self, host.request("POST", "/webhooks/nosuch/webhook", body=b"{}"),
                       404, "not_found")

    def test_unknown_path_below_a_channel_is_404(self):
        with serve(REST) as host:
            json_error(self, host.request("GET", "/webhooks/rest/nothing"), 404, "not_found")

    def test_get_on_the_webhook_is_405_with_allow_post(self):
        with serve(REST) as host:
            answer = host.request("GET", "/webhooks/rest/webhook")
            json_error(self, answer, 405, "method_not_allowed")
            self.assertIn("POST", answer[1].get("allow", ""))

    def test_wrong_method_on_the_health_route_is_405_with_allow_get(self):
        with serve(REST) as host:
            answer = host.request("DELETE", "/webhooks/rest/")
            json_error(self, answer, 405, "method_not_allowed")
            self.assertIn("GET", answer[1].get("allow", ""))

    def test_post_on_the_root_is_405_with_allow_get(self):
        with serve(REST) as host:
            answer = host.request("POST", "/", body=b"{}")
            json_error(self, answer, 405, "method_not_allowed")
            self.assertIn("GET", answer[1].get("allow", ""))


class BodyLimitTests(unittest.TestCase):
    LIMIT = 100

    def host(self, files=REST, **kw):
        return serve(files, bot=TEXT_BOT, max_body_size=self.LIMIT, **kw)

    def test_body_over_the_limit_with_content_length_is_413(self):
        with self.host() as host:
            answer = host.request("POST", "/webhooks/rest/webhook", body=b"x" * (self.LIMIT + 1),
                                  headers={"Content-Type": "application/json"})
            json_error(self, answer, 413, "payload_too_large")

    def test_body_over_the_limit_sent_chunked_is_413(self):
        with self.host() as host:
            answer = chunked_request(host, "POST", "/webhooks/rest/webhook", [b"y" * 40] * 5,
                                     headers={"Content-Type": "application/json"})
            json_error(self, answer, 413, "payload_too_large")

    def test_body_of_exactly_the_limit_is_accepted(self):
        with self.host() as host:
            payload = b'{"sender":"u","message":"%s"}' % (b"a" * (self.LIMIT - 27))
            self.assertEqual(len(payload), self.LIMIT)
            status, _, body = host.request("POST", "/webhooks/rest/webhook", body=payload)
            self.assertEqual(status, 200, body)

    def test_413_comes_before_any_script_runs(self):
        with self.host({"credentials.yml": "traced.lua:\n", "traced.lua": TRACED}) as host:
            status = host.request("POST", "/webhooks/traced/webhook", body=b"z" * 500)[0]
            self.assertEqual(status, 413)
            status = chunked_request(host, "POST", "/webhooks/traced/webhook", [b"z" * 60] * 3)[0]
            self.assertEqual(status, 413)
            log = final_log(host)
            self.assertNotIn("TRACED", log)
            self.assertNotIn("BOT GOT", log)

    def test_host_keeps_serving_after_413(self):
        with self.host() as host:
            self.assertEqual(host.request("POST", "/webhooks/rest/webhook", body=b"x" * 1000)[0], 413)
            self.assertEqual(chunked_request(host, "POST", "/webhooks/rest/webhook",
                                             [b"x" * 90] * 3)[0], 413)
            status, _, body = host.post_json("/webhooks/rest/webhook", {"sender": "u", "message": "ok"})
            self.assertEqual(status, 200, body)
            self.assertEqual(body, [{"recipient_id": "u", "text": "echo: ok"}])

    def test_default_limit_is_one_mebibyte(self):
        with serve(REST, bot=TEXT_BOT) as host:
            self.assertEqual(status_for_announced_body(host, "POST", "/webhooks/rest/webhook",
                                                       1048576 + 1), 413)
            status, _, body = host.request("POST", "/webhooks/rest/webhook",
                                           body=b'{"sender":"u","message":"hi"}' + b" " * 1000000)
            self.assertEqual(status, 200, body)


class ConnectionTests(unittest.TestCase):
    def test_idle_connection_is_closed_after_the_connection_timeout(self):
        with serve(REST, connection_timeout=1) as host:
            with socket.create_connection(("127.0.0.1", host.port), timeout=6) as sock:
                started = time.monotonic()
                self.assertEqual(sock.recv(100), b"")  # closed by the host, nothing sent
                self.assertLess(time.monotonic() - started, 5)
            self.assertEqual(host.request("GET", "/")[0], 200)

    def test_several_requests_on_one_keep_alive_connection(self):
        with serve(REST, bot=TEXT_BOT) as host:
            conn = host.connection()
            try:
                first = request_on(conn, "GET", "/")
                sock = conn.sock
                answers = [first,
                           request_on(conn, "POST", "/webhooks/rest/webhook",
                                      b'{"sender":"u","message":"one"}'),
                           request_on(conn, "GET", "/webhooks/rest/"),
                           request_on(conn, "GET", "/nope"),
                           request_on(conn, "GET", "/webhooks/rest/webhook"),
                           request_on(conn, "POST", "/webhooks/rest/webhook",
                                      b'{"sender":"u","message":"two"}')]
                self.assertIs(conn.sock, sock, "the host closed the keep-alive connection")
            finally:
                conn.close()
            self.assertEqual([a[0] for a in answers], [200, 200, 200, 404, 405, 200])
            self.assertEqual(decode(answers[1][2]), [{"recipient_id": "u", "text": "echo: one"}])
            self.assertEqual(decode(answers[5][2]), [{"recipient_id": "u", "text": "echo: two"}])


class CorsTests(unittest.TestCase):
    ORIGIN = "https://app.example"

    def test_specific_origin_gets_allow_origin_on_answers(self):
        with serve(REST, args=["--cors", self.ORIGIN]) as host:
            for method, path, body in (("GET", "/", None), ("GET", "/webhooks/rest/", None),
                                       ("GET", "/nope", None),
                                       ("POST", "/webhooks/rest/webhook",
                                        b'{"sender":"u","message":"hi"}')):
                with self.subTest(method=method, path=path):
                    _, headers, _ = host.request(method, path, body=body,
                                                 headers={"Origin": self.ORIGIN})
                    self.assertEqual(headers.get("access-control-allow-origin"), self.ORIGIN)

    def test_specific_origin_gets_allow_origin_on_405_and_413(self):
        with serve(REST, args=["--cors", self.ORIGIN], max_body_size=10) as host:
            for method, path, body, status in (("GET", "/webhooks/rest/webhook", None, 405),
                                               ("POST", "/webhooks/rest/webhook", b"x" * 50, 413)):
                with self.subTest(status=status):
                    got, headers, _ = host.request(method, path, body=body,
                                                   headers={"Origin": self.ORIGIN})
                    self.assertEqual(got, status)
                    self.assertEqual(headers.get("access-control-allow-origin"), self.ORIGIN)

    def test_specific_origin_is_not_granted_to_another_origin(self):
        with serve(REST, args=["--cors", self.ORIGIN]) as host:
            _, headers, _ = host.request("GET", "/", headers={"Origin": "https://other.example"})
            self.assertNotEqual(headers.get("access-control-allow-origin"), "https://other.example")
            self.assertNotEqual(headers.get("access-control-allow-origin"), "*")

    def test_several_origins_are_each_allowed(self):
        with serve(REST, args=["--cors", self.ORIGIN, "https://two.example"]) as host:
            for origin in (self.ORIGIN, "https://two.example"):
                _, headers, _ = host.request("GET", "/", headers={"Origin": origin})
                self.assertEqual(headers.get("access-control-allow-origin"), origin)

    def test_star_allows_any_origin(self):
        with serve(REST, args=["--cors", "*"]) as host:
            _, headers, _ = host.request("GET", "/webhooks/rest/",
                                         headers={"Origin": "https://anywhere.example"})
            self.assertEqual(headers.get("access-control-allow-origin"), "*")

    def test_preflight_is_answered_204_with_allowed_methods_and_headers(self):
        with serve(REST, args=["--cors", self.ORIGIN]) as host:
            status, headers, body = host.request(
                "OPTIONS", "/webhooks/rest/webhook",
                headers={"Origin": self.ORIGIN, "Access-Control-Request-Method": "POST",
                         "Access-Control-Request-Headers": "content-type, x-custom"})
            self.assertEqual(status, 204)
            self.assertEqual(body, b"")
            self.assertEqual(headers.get("access-control-allow-origin"), self.ORIGIN)
            self.assertIn("POST", headers.get("access-control-allow-methods", ""))
            allowed = headers.get("access-control-allow-headers", "").lower()
            self.assertIn("content-type", allowed)
            self.assertIn("x-custom", allowed)

    def test_preflight_with_star(self):
        with serve(REST, args=["--cors", "*"]) as host:
            status, headers, _ = host.request(
                "OPTIONS", "/webhooks/rest/webhook",
                headers={"Origin": "https://x.example", "Access-Control-Request-Method": "POST",
                         "Access-Control-Request-Headers": "content-type"})
            self.assertEqual(status, 204)
            self.assertEqual(headers.get("access-control-allow-origin"), "*")
            self.assertIn("POST", headers.get("access-control-allow-methods", ""))
            self.assertIn("content-type", headers.get("access-control-allow-headers", "").lower())

    def test_no_cors_headers_without_the_cors_option(self):
        with serve(REST) as host:
            _, headers, _ = host.request("GET", "/", headers={"Origin": self.ORIGIN})
            self.assertNotIn("access-control-allow-origin", headers)
            status, headers, _ = host.request(
                "OPTIONS", "/webhooks/rest/webhook",
                headers={"Origin": self.ORIGIN, "Access-Control-Request-Method": "POST"})
            self.assertNotEqual(status, 204)
            self.assertFalse([h for h in headers if h.startswith("access-control-")], headers)


class RequestIdTests(unittest.TestCase):
    def test_every_answer_carries_a_distinct_request_id(self):
        with serve(REST, max_body_size=100) as host:
            ids = []
            for method, path, body in (("GET", "/", None), ("GET", "/nope", None),
                                       ("GET", "/webhooks/rest/webhook", None),
                                       ("POST", "/webhooks/rest/webhook", b"x" * 200),
                                       ("POST", "/webhooks/rest/webhook", b"{bad"),
                                       ("GET", "/status", None)):
                status, headers, _ = host.request(method, path, body=body)
                with self.subTest(method=method, path=path, status=status):
                    self.assertTrue(headers.get("x-request-id"), headers)
                    ids.append(headers.get("x-request-id"))
            self.assertEqual(len(set(ids)), len(ids), ids)

    def test_log_lines_of_a_request_carry_its_request_id(self):
        with serve({"credentials.yml": "traced.lua:\n", "traced.lua": TRACED}, bot=TEXT_BOT) as host:
            status, headers, body = host.request("POST", "/webhooks/traced/webhook", body=b"{}")
            self.assertEqual(status, 200, body)
            request_id = headers["x-request-id"]
            lines = log_lines_with_id(host, request_id)
            for marker in ("TRACED VERIFY ran", "TRACED RECEIVE ran", "BOT GOT hi"):
                self.assertTrue(any(marker in line for line in lines),
                                "no line with %r tagged [%s] in:\n%s" % (marker, request_id, host.log()))

    def test_413_log_line_carries_the_request_id(self):
        with serve(REST, max_body_size=10) as host:
            status, headers, _ = host.request("POST", "/webhooks/rest/webhook", body=b"x" * 50)
            self.assertEqual(status, 413)
            lines = log_lines_with_id(host, headers["x-request-id"])
            self.assertTrue(any("413" in line for line in lines), host.log())

    def test_a_client_request_id_is_used(self):
        with serve({"credentials.yml": "traced.lua:\n", "traced.lua": TRACED}, bot=TEXT_BOT) as host:
            status, headers, _ = host.request("POST", "/webhooks/traced/webhook", body=b"{}",
                                              headers={"X-Request-Id": "edge-7f3a.42"})
            self.assertEqual((status, headers["x-request-id"]), (200, "edge-7f3a.42"))
            self.assertTrue(any("BOT GOT hi" in line
                                for line in log_lines_with_id(host, "edge-7f3a.42")), host.log())

    def test_a_client_request_id_that_is_not_a_plain_token_is_replaced(self):
        with serve(REST) as host:
            for sent in ("has space", "x" * 80, "quote\"d", ""):
                with self.subTest(sent=sent):
                    _, headers, _ = host.request("GET", "/", headers={"X-Request-Id": sent})
                    self.assertNotEqual(headers["x-request-id"], sent)
                    self.assertRegex(headers["x-request-id"], r"^[0-9a-f]{14}$")

    def test_debug_level_logs_one_access_line_per_answer(self):
        with serve(REST, args=("--log-level", "debug"), max_body_size=10) as host:
            for method, path, body, status in (("GET", "/nope?x=1", None, 404),
                                               ("POST", "/webhooks/rest/webhook", b"x" * 50, 413),
                                               ("GET", "/webhooks/rest/", None, 200)):
                _, headers, _ = host.request(method, path, body=body)
                rid = headers["x-request-id"]
                host.wait_for_log(r"DEBUG +\[%s\] %s %s -> %d \(\d+\.\d ms\)"
                                  % (rid, method, re.escape(path), status))

    def test_ids_differ_between_workers(self):
        with serve(REST, workers=2) as host:
            ids = [host.request("GET", "/")[1]["x-request-id"] for _ in range(20)]
            self.assertEqual(len(set(ids)), 20, ids)


class StatusTests(unittest.TestCase):
    def test_status_reports_version_uptime_bot_and_channels(self):
        files = {"credentials.yml": "rest:\nrouted.lua:\n", "routed.lua": ROUTED}
        with serve(files, bot=TEXT_BOT) as host:
            status, headers, body = host.request("GET", "/status")
            self.assertEqual(status, 200)
            self.assertTrue(headers["content-type"].startswith("application/json"), headers)
            doc = decode(body)
            self.assertEqual(doc["version"], version())
            self.assertIsInstance(doc["uptime"], (int, float))
            self.assertGreaterEqual(doc["uptime"], 0)
            self.assertIn("bot.lua", str(doc["bot"]))
            channels = {c["name"]: c for c in doc["channels"]}
            self.assertEqual(sorted(channels), ["rest", "routed"])
            rest, routed = channels["rest"], channels["routed"]
            # No absolute paths: bundled scripts are shown under $SWITCHBOARD_HOME, project ones
            # under ./ (the credentials file's folder).
            self.assertEqual(rest["script"], "$SWITCHBOARD_HOME/channels/rest.lua", rest)
            self.assertEqual(routed["script"], "./routed.lua", routed)
            self.assertTrue(os.path.samefile(shown_path(routed["script"], host.cwd),
                                             os.path.join(host.cwd, "routed.lua")), routed)
            for channel in (rest, routed):
                self.assertIsInstance(channel["generation"], int)
                self.assertIn("last_reload_error", channel)
                self.assertIsNone(channel["last_reload_error"])

    def test_status_counts_requests_by_status_class(self):
        with serve(REST) as host:
            host.request("GET", "/")
            host.request("GET", "/webhooks/rest/")
            host.request("GET", "/nope")
            host.request("GET", "/webhooks/rest/webhook")
            host.request("POST", "/webhooks/rest/webhook", body=b"{bad")
            requests = decode(host.request("GET", "/status")[2])["requests"]
            for key in ("1xx", "2xx", "3xx", "4xx", "5xx"):
                self.assertIsInstance(requests.get(key), int, requests)
            self.assertGreaterEqual(requests["2xx"], 2)
            self.assertEqual(requests["4xx"], 3)
            self.assertEqual(requests["5xx"], 0)

    def test_status_counts_413_answers(self):
        with serve(REST, max_body_size=10) as host:
            self.assertEqual(host.request("POST", "/webhooks/rest/webhook", body=b"x" * 50)[0], 413)
            requests = decode(host.request("GET", "/status")[2])["requests"]
            self.assertEqual(requests["4xx"], 1, requests)


class ExtraRouteTests(unittest.TestCase):
    FILES = {"credentials.yml": "routed.lua:\nover.lua:\n", "routed.lua": ROUTED,
             "over.lua": OVERRIDING}

    def test_extra_get_route_is_mounted_under_the_channel(self):
        with serve(self.FILES) as host:
            status, headers, body = host.request("GET", "/webhooks/routed/set_webhook?url=https%3A%2F%2Fx")
            self.assertEqual(status, 200, body)
            self.assertTrue(headers["content-type"].startswith("application/json"))
            self.assertEqual(decode(body), {"set": True, "url": "https://x"})

    def test_extra_route_with_a_trailing_slash(self):
        with serve(self.FILES) as host:
            status, _, body = host.request("GET", "/webhooks/routed/set_webhook/")
            self.assertEqual(status, 200, body)
            self.assertEqual(decode(body), {"set": True})

    def test_extra_route_with_another_method(self):
        with serve(self.FILES) as host:
            status, _, body = host.request("PUT", "/webhooks/routed/thing", body=b"")
            self.assertEqual(status, 201, body)
            self.assertEqual(decode(body), {"method": "PUT"})

    def test_wrong_method_on_an_extra_route_is_405_with_allow(self):
        with serve(self.FILES) as host:
            answer = host.request("POST", "/webhooks/routed/set_webhook", body=b"{}")
            json_error(self, answer, 405, "method_not_allowed")
            self.assertIn("GET", answer[1].get("allow", ""))

    def test_channel_without_the_route_answers_404(self):
        with serve(self.FILES) as host:
            json_error(self, host.request("GET", "/webhooks/over/set_webhook"), 404, "not_found")

    def test_route_overrides_get_root_of_the_channel(self):
        with serve(self.FILES) as host:
            status, headers, body = host.request("GET", "/webhooks/over/")
            self.assertEqual(status, 200)
            self.assertTrue(headers["content-type"].startswith("text/plain"), headers)
            self.assertEqual(body, b"custom health")
            self.assertEqual(host.request("GET", "/webhooks/over")[2], b"custom health")

    def test_route_overrides_post_webhook(self):
        with serve(self.FILES) as host:
            status, headers, body = host.post_json("/webhooks/over/webhook", {"sender": "u"})
            self.assertEqual(status, 202, body)
            self.assertEqual(headers.get("x-handled-by"), "route")
            self.assertEqual(body, {"overridden": True})
            self.assertNotIn("receive must not run", final_log(host))


class HttpsTests(unittest.TestCase):
    def setUp(self):
        made = make_self_signed_cert(temp_dir())
        if not made:
            self.skipTest("the openssl command is not installed")
        self.cert, self.key = made

    def https_host(self, files=REST, **kw):
        return serve(files, args=["--ssl-certificate", self.cert, "--ssl-keyfile", self.key], **kw)

    def test_https_serves_the_routes(self):
        with self.https_host(bot=TEXT_BOT) as host:
            self.assertEqual(host.scheme, "https")
            status, _, body = https_request(host.port, "GET", "/")
            self.assertEqual((status, body.decode()), (200, "Hello from Switchboard: %s" % version()))
            status, _, body = https_request(host.port, "POST", "/webhooks/rest/webhook",
                                            b'{"sender":"u","message":"hi"}',
                                            {"Content-Type": "application/json"})
            self.assertEqual(status, 200, body)
            self.assertEqual(decode(body), [{"recipient_id": "u", "text": "echo: hi"}])

    def test_https_request_url_has_the_https_scheme(self):
        channel = 'return { name = "u", receive = function(req) return {}, { json = { url = req.url } } end }\n'
        with self.https_host({"credentials.yml": "u.lua:\n", "u.lua": channel}) as host:
            status, _, body = https_request(host.port, "POST", "/webhooks/u/webhook?a=1", b"")
            self.assertEqual(status, 200, body)
            self.assertEqual(decode(body)["url"],
                             "https://127.0.0.1:%d/webhooks/u/webhook?a=1" % host.port)

    def test_missing_certificate_file_fails_startup(self):
        result = run_to_exit(["run", "-p", "0", "-i", "127.0.0.1", "--ssl-certificate",
                              "/nonexistent/cert.pem", "--ssl-keyfile", self.key],
                             cwd=make_project(REST))
        self.assertIsNotNone(result.returncode, result.stderr)
        self.assertNotEqual(result.returncode, 0)
        self.assertNotIn("listening on", result.stderr)
        lines = error_lines(result.stderr)
        self.assertEqual(len(lines), 1, result.stderr)
        self.assertIn("/nonexistent/cert.pem", lines[0])


if __name__ == "__main__":
    unittest.main()
