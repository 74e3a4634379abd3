# SPDX-License-Identifier: MIT
"""The bundled `twilio` channel (docs/contract.md §8): form-encoded Messaging webhooks signed with
X-Twilio-Signature (computed here exactly as Twilio documents it), SMS / WhatsApp / location /
media, the 204 answer, and replies through a stand-in of the Messages API."""
import base64
import hashlib
import hmac
import itertools
import json
import unittest
import urllib.parse

import channel_fixtures
from channel_fixtures import (assert_refused, check, credentials_yml, sdk, serve_bot,
                              startup_error)
from standins import Reply, StandIn, StandInHostCase, error_line, in_threads

WEBHOOK = "/webhooks/twilio/webhook"

ACCOUNT_SID = "AC00000000000000000000000000000000"
AUTH_TOKEN = "twilio-auth-token-5f2e9a"
NUMBER = "+15005550006"
MESSAGES_PATH = "/2010-04-01/Accounts/%s/Messages.json" % ACCOUNT_SID

# A Lua bot that answers a few commands with each kind of message, and anything else with a
# JSON description of the message it received (so the Messages API stand-in shows what the bot
# got). The commands "text", "image" and "fail then text" are recording_bot's own.
BOT = r"""
local replies = {}

replies["buttons"] = function(out)
  out:send_text_with_buttons("Pick", { { title = "Yes", payload = "/affirm" },
                                       { title = "No", payload = "/deny" } })
end

replies["custom"] = function(out)
  out:send_custom_json({ media_url = { "https://example.com/a.png", "https://example.com/b.png" },
                         body = "two pictures", status_callback = "https://example.com/status" })
end

replies["custom service"] = function(out)
  out:send_custom_json({ messaging_service_sid = "MG0123", ContentSid = "HX0123",
                         content_variables = { ["1"] = "Ana" } })
end

return require("recording_bot").describing(replies)
"""


def messages_api(rec):
    form = {k: v[0] for k, v in urllib.parse.parse_qs(rec.body.decode(),
                                                      keep_blank_values=True).items()}
    if form.get("To") == "+15550001111" and form.get("Body") != "second":
        return Reply(status=400, json={
            "code": 21211, "message": "The 'To' number +15550001111 is not a valid phone number.",
            "more_info": "https://www.twilio.com/docs/errors/21211", "status": 400})
    return Reply(status=201, json={"sid": "SM0000000000000000000000000000abcd",
                                   "status": "queued"})


def fixture(name):
    return channel_fixtures.fixture_json("twilio", name)


# Twilio's MessageSid names one message: the channel hands each to the bot once (a repeat is a
# retry), so a message a test sends more than once to one host gets a new sid each time.
SIDS = itertools.count(1)


def fresh_sid(params):
    return dict(params, MessageSid="SMtest%08d" % next(SIDS))


def twilio_signature(url, params, token=AUTH_TOKEN):
    """As Twilio documents it: the full URL, then each POST parameter's name and value, sorted
    by name (case-sensitive), with no delimiters; HMAC-SHA1 with the auth token; base64."""
    items = params.items() if isinstance(params, dict) else params
    data = url + "".join(name + value for name, value in sorted(items))
    mac = hmac.new(token.encode("utf-8"), data.encode("utf-8"), hashlib.sha1)
    return base64.b64encode(mac.digest()).decode()


def form_of(rec):
    """The form fields of a recorded request: name -> list of values."""
    return urllib.parse.parse_qs(rec.body.decode(), keep_blank_values=True)


def credentials(api_url, number=NUMBER):
    return credentials_yml("twilio", 'account_sid: "%s"' % ACCOUNT_SID,
                           'auth_token: "%s"' % AUTH_TOKEN, 'twilio_number: "%s"' % number,
                           "api_url: %s" % api_url)


class TwilioTests(StandInHostCase):
    @classmethod
    def start(cls):
        cls.api = cls.standin(messages_api)
        cls.host = serve_bot(credentials(cls.api.url("/")), BOT)
        cls.url = "http://127.0.0.1:%d%s" % (cls.host.port, WEBHOOK)

    # -- helpers -----------------------------------------------------------------------------

    def post(self, params, signature=None, path=WEBHOOK, headers=None, sign_url=None,
             body=None):
        """POST the form `params` (a dict or a list of pairs), signed over `sign_url` (default:
        the URL it is posted to) unless `signature` is given ("" sends none). Returns (status,
        headers, body bytes, the Messages API requests the call caused)."""
        if body is None:
            body = urllib.parse.urlencode(params)
        if signature is None:
            signature = twilio_signature(sign_url or "http://127.0.0.1:%d%s"
                                         % (self.host.port, path), params)
        hdrs = {"Content-Type": "application/x-www-form-urlencoded; charset=UTF-8"}
        if signature:
            hdrs["X-Twilio-Signature"] = signature
        hdrs.update(headers or {})
        before = len(self.api.snapshot())
        status, rhdrs, data = self.host.request("POST", path, body=body, headers=hdrs)
        return status, rhdrs, data, self.api.snapshot()[before:]

    def creates(self, recs):
        """The Messages API forms, after checking method, path, auth and content type."""
        auth = "Basic " + base64.b64encode(("%s:%s" % (ACCOUNT_SID, AUTH_TOKEN)).encode()).decode()
        forms = []
        for r in recs:
            self.assertEqual(r.method, "POST")
            self.assertEqual(r.path, MESSAGES_PATH)
            self.assertEqual(r.raw_query, "")
            self.assertEqual(r.headers.get("authorization"), auth)
            self.assertTrue(r.headers.get("content-type", "").startswith(
                "application/x-www-form-urlencoded"), r.headers)
            forms.append(form_of(r))
        return forms

    def got(self, recs):
        result = []
        for form in self.creates(recs):
            body = form["Body"][0]
            self.assertTrue(body.startswith("got "), body)
            desc = json.loads(body[4:])
            self.assertEqual(desc["sender"], form["To"][0])
            result.append((form, desc))
        return result

    def assert_204(self, status, headers, body):
        self.assertEqual((status, body), (204, b""))
        self.assertNotIn("content-type", headers)

    def sms(self, sender, text, **extra):
        params = dict(fixture("sms.json"), From=sender, Body=text,
                      MessageSid="SM" + sender.strip("+:"))
        params.update(extra)
        return params

    # -- signatures --------------------------------------------------------------------------

    def test_sms_message_and_reply(self):
        status, headers, body, recs = self.post(fixture("sms.json"))
        self.assert_204(status, headers, body)
        [(form, got)] = self.got(recs)
        self.assertEqual(sorted(form), ["Body", "From", "To"])
        self.assertEqual((form["From"], form["To"]), ([NUMBER], ["+14155550123"]))
        self.assertEqual(got, {
            "sender": "+14155550123", "text": "Hi there, write me at ana@example.com",
            "message_id": "SM3f5c0a1b2c3d4e5f60718293a4b5c6d7", "input_channel": "twilio",
            "metadata": {"to": NUMBER}})

    def test_wrong_token_tampered_param_other_url_and_missing_header_are_403(self):
        params = self.sms("+14155550911", "hello")
        tampered = dict(params, Body="hello!")
        cases = [
            ("wrong token", params, twilio_signature(self.url, params, token="other")),
            ("tampered param", tampered, twilio_signature(self.url, params)),
            ("added param", dict(params, Extra="1"), twilio_signature(self.url, params)),
            ("other URL", params, twilio_signature(self.url + "/x", params)),
            ("https instead of http", params,
             twilio_signature(self.url.replace("http:", "https:"), params)),
            ("missing header", params, ""),
        ]
        for name, sent, signature in cases:
            status, headers, body, recs = self.post(sent, signature=signature)
            self.assertEqual(status, 403, name)
            self.assertEqual(json.loads(body)["error"], "forbidden", name)
            self.assertEqual(recs, [], name)
        self.assertNotIn("+14155550911", self.host.log())

    def test_the_query_string_is_part_of_the_signed_url(self):
        path = WEBHOOK + "?foo=1&bar=a%20b"
        params = self.sms("+14155550912", "with query")
        status, headers, body, recs = self.post(params, path=path)
        self.assert_204(status, headers, body)
        self.assertEqual(len(recs), 1)
        status, _, _, recs = self.post(params, path=path, signature=twilio_signature(
            self.url, params))
        self.assertEqual((status, recs), (403, []))

    def test_url_with_or_without_port_as_twilio_helpers_accept(self):
        params = self.sms("+14155550913", "ports")
        forwarded = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "bot.example.com"}
        for url in ("https://bot.example.com/webhooks/twilio/webhook",
                    "https://bot.example.com:443/webhooks/twilio/webhook"):
            status, headers, body, recs = self.post(fresh_sid(params), headers=forwarded,
                                                    sign_url=url)
            self.assert_204(status, headers, body)
            self.assertEqual(len(recs), 1, url)
        status, _, _, recs = self.post(params, headers=forwarded, sign_url=self.url)
        self.assertEqual((status, recs), (403, []))
        # signed without the port the host is addressed with: accepted, as Twilio's helpers do
        status, _, _, recs = self.post(fresh_sid(params),
                                       sign_url="http://127.0.0.1%s" % WEBHOOK)
        self.assertEqual((status, len(recs)), (204, 1))

    def test_repeated_parameter_names_are_all_signed(self):
        # Twilio's helpers sign each name with each of its values, sorted.
        params = list(self.sms("+14155550914", "repeated").items()) + [("Tag", "b"), ("Tag", "a")]
        status, headers, body, recs = self.post(params)
        self.assert_204(status, headers, body)
        self.assertEqual(len(recs), 1)
        only_first = [p for p in params if p != ("Tag", "a")]
        status, _, _, recs = self.post(params, signature=twilio_signature(self.url, only_first))
        self.assertEqual((status, recs), (403, []))

    def test_json_body_signed_with_body_sha256(self):
        body = json.dumps({"From": "+1", "Body": "x"})
        digest = hashlib.sha256(body.encode()).hexdigest()
        path = WEBHOOK + "?bodySHA256=" + digest
        url = "http://127.0.0.1:%d%s" % (self.host.port, path)
        signature = twilio_signature(url, {})
        status, _, _, _ = self.post({}, body=body, path=path, signature=signature,
                                    headers={"Content-Type": "application/json"})
        self.assertEqual(status, 204)
        status, _, _, _ = self.post({}, body=body + " ", path=path, signature=signature,
                                    headers={"Content-Type": "application/json"})
        self.assertEqual(status, 403)

    # -- the official library's verdicts (tests/sdk/twilio_check.js) -------------------------

    # (what is checked, the URL Twilio signed, the scheme, host and target the request arrives
    # with). The host is the public one (X-Forwarded-Proto/-Host, as behind a proxy).
    URL_SPELLINGS = [
        ("' signed, %27 received", "https://bot.example.com" + WEBHOOK + "?name=O'Brien",
         "https", "bot.example.com", WEBHOOK + "?name=O%27Brien"),
        ("%27 signed, ' received", "https://bot.example.com" + WEBHOOK + "?name=O%27Brien",
         "https", "bot.example.com", WEBHOOK + "?name=O'Brien"),
        ("' in both", "https://bot.example.com" + WEBHOOK + "?name=O'Brien",
         "https", "bot.example.com", WEBHOOK + "?name=O'Brien"),
        ("another value", "https://bot.example.com" + WEBHOOK + "?name=O'Brien",
         "https", "bot.example.com", WEBHOOK + "?name=O'Neil"),
        ("default port signed, none received", "https://bot.example.com:443" + WEBHOOK + "?a=1",
         "https", "bot.example.com", WEBHOOK + "?a=1"),
        ("no port signed, default received", "https://bot.example.com" + WEBHOOK + "?a=1",
         "https", "bot.example.com:443", WEBHOOK + "?a=1"),
        ("' signed with the port, %27 received without",
         "https://bot.example.com:443" + WEBHOOK + "?n=it's", "https", "bot.example.com",
         WEBHOOK + "?n=it%27s"),
        ("other port signed and received", "https://bot.example.com:8443" + WEBHOOK,
         "https", "bot.example.com:8443", WEBHOOK),
        ("no port signed, other port received", "https://bot.example.com" + WEBHOOK,
         "https", "bot.example.com:8443", WEBHOOK),
        ("default port signed, other port received", "https://bot.example.com:443" + WEBHOOK,
         "https", "bot.example.com:8443", WEBHOOK),
        ("http port signed on https", "https://bot.example.com:80" + WEBHOOK,
         "https", "bot.example.com", WEBHOOK),
        ("default port written 0443", "https://bot.example.com" + WEBHOOK,
         "https", "bot.example.com:0443", WEBHOOK),
        ("http signed, https received", "http://bot.example.com" + WEBHOOK,
         "https", "bot.example.com", WEBHOOK),
        ("host in capitals received", "https://bot.example.com" + WEBHOOK,
         "https", "BOT.Example.com", WEBHOOK),
        ("host in capitals signed", "https://BOT.Example.com" + WEBHOOK,
         "https", "bot.example.com", WEBHOOK),
        ("%20 signed, + received", "https://bot.example.com" + WEBHOOK + "?q=a%20b",
         "https", "bot.example.com", WEBHOOK + "?q=a+b"),
        ("+ signed, %20 received", "https://bot.example.com" + WEBHOOK + "?q=a+b",
         "https", "bot.example.com", WEBHOOK + "?q=a%20b"),
        ("~ signed, %7E received", "https://bot.example.com" + WEBHOOK + "?q=~x",
         "https", "bot.example.com", WEBHOOK + "?q=%7Ex"),
        ("%7E signed, ~ received", "https://bot.example.com" + WEBHOOK + "?q=%7Ex",
         "https", "bot.example.com", WEBHOOK + "?q=~x"),
        ("upper-case hex signed, lower-case received",
         "https://bot.example.com" + WEBHOOK + "?city=Z%C3%BCrich", "https", "bot.example.com",
         WEBHOOK + "?city=Z%c3%bcrich"),
        ("lower-case hex signed, upper-case received",
         "https://bot.example.com" + WEBHOOK + "?city=Z%c3%bcrich", "https", "bot.example.com",
         WEBHOOK + "?city=Z%C3%BCrich"),
        ("quote and brackets", "https://bot.example.com" + WEBHOOK + "?q=%22%3Cb%3E%22",
         "https", "bot.example.com", WEBHOOK + '?q="<b>"'),
        ("reserved characters re-encoded", "https://bot.example.com" + WEBHOOK +
         "?next=%2Fa%2Fb%3Fc%3D1&at=%40", "https", "bot.example.com",
         WEBHOOK + "?next=/a/b?c=1&at=@"),
        ("repeated names grouped", "https://bot.example.com" + WEBHOOK + "?a=1&a=3&b=2",
         "https", "bot.example.com", WEBHOOK + "?a=1&b=2&a=3"),
        ("names in another order", "https://bot.example.com" + WEBHOOK + "?a=1&b=2",
         "https", "bot.example.com", WEBHOOK + "?b=2&a=1"),
        ("index-like names first", "https://bot.example.com" + WEBHOOK + "?1=y&2=x&b=1",
         "https", "bot.example.com", WEBHOOK + "?b=1&2=x&1=y"),
        ("a name without =", "https://bot.example.com" + WEBHOOK + "?flag=&x=1",
         "https", "bot.example.com", WEBHOOK + "?flag&x=1"),
        ("empty pairs dropped", "https://bot.example.com" + WEBHOOK + "?a=1&b=2",
         "https", "bot.example.com", WEBHOOK + "?a=1&&b=2&"),
        ("a bad escape kept as text", "https://bot.example.com" + WEBHOOK + "?p=100%25zz",
         "https", "bot.example.com", WEBHOOK + "?p=100%zz"),
        ("bytes that are not UTF-8", "https://bot.example.com" + WEBHOOK + "?b=%EF%BF%BDx",
         "https", "bot.example.com", WEBHOOK + "?b=%FFx"),
        ("a surrogate's bytes", "https://bot.example.com" + WEBHOOK +
         "?b=%EF%BF%BD%EF%BF%BD%EF%BF%BD", "https", "bot.example.com", WEBHOOK + "?b=%ED%A0%80"),
        ("a cut-off sequence", "https://bot.example.com" + WEBHOOK + "?b=%EF%BF%BDx",
         "https", "bot.example.com", WEBHOOK + "?b=%E2%82x"),
        ("the largest index name first", "https://bot.example.com" + WEBHOOK +
         "?4294967294=a&x=1", "https", "bot.example.com", WEBHOOK + "?x=1&4294967294=a"),
        ("a name past the indexes keeps its place", "https://bot.example.com" + WEBHOOK +
         "?4294967295=a&x=1", "https", "bot.example.com", WEBHOOK + "?x=1&4294967295=a"),
        ("a name with a leading zero keeps its place", "https://bot.example.com" + WEBHOOK +
         "?07=a&x=1", "https", "bot.example.com", WEBHOOK + "?x=1&07=a"),
        ("an empty port", "https://bot.example.com" + WEBHOOK,
         "https", "bot.example.com:", WEBHOOK),
        ("an IPv4 address as received", "http://10.0.0.5:5005" + WEBHOOK,
         "http", "10.0.0.5:5005", WEBHOOK),
        ("an IPv4 address in a short spelling", "http://10.0.0.5:5005" + WEBHOOK,
         "http", "10.5:5005", WEBHOOK),
        ("an IPv4 address in octal and hex", "http://10.0.0.5" + WEBHOOK,
         "http", "012.0x0.0.05", WEBHOOK),
        ("a host ending in a bad number", "http://example.08" + WEBHOOK + "?a='",
         "http", "example.08", WEBHOOK + "?a=%27"),
        ("a trailing dot kept", "https://bot.example.com." + WEBHOOK + "?a='",
         "https", "bot.example.com.", WEBHOOK + "?a=%27"),
        ("an escaped letter in the path", "https://bot.example.com" + WEBHOOK,
         "https", "bot.example.com", "/webhooks/twilio/%77ebhook"),
        ("an escaped letter in the path as signed",
         "https://bot.example.com/webhooks/twilio/%77ebhook?a=%27", "https", "bot.example.com",
         "/webhooks/twilio/%77ebhook?a='"),
        ("braces re-encoded", "https://bot.example.com" + WEBHOOK + "?v=%7B%7D",
         "https", "bot.example.com", WEBHOOK + "?v={}"),
        ("an empty query", "https://bot.example.com" + WEBHOOK,
         "https", "bot.example.com", WEBHOOK + "?"),
        ("the query dropped", "https://bot.example.com" + WEBHOOK + "?a=1",
         "https", "bot.example.com", WEBHOOK),
    ]

    def assert_same_verdicts(self, cases, official, send):
        """Posts each case with the official library's signature through send(i, case, signature)
        -> status, and checks the channel accepts (204) exactly what the library accepts."""
        verdicts = []
        for i, (case, answer) in enumerate(zip(cases, official)):
            status = send(i, case, answer["signature"])
            self.assertIn(status, (204, 403), case[0])
            verdicts.append((case[0], answer["valid"], status == 204))
        differ = [(name, lib) for name, lib, ours in verdicts if lib != ours]
        self.assertEqual(differ, [], "cases where the channel and twilio.validateRequest "
                         "disagree (name, the library's verdict)")
        return {name: lib for name, lib, _ in verdicts}

    def test_url_spellings_the_official_library_accepts(self):
        params = self.sms("+14155550940", "spellings")

        def send(i, case, signature):
            _, _, proto, host, target = case
            status, _, _, _ = self.post(dict(params, MessageSid="SMspelling%d" % i),
                                        signature=signature, path=target, headers={
                                            "X-Forwarded-Proto": proto, "X-Forwarded-Host": host})
            return status

        # The signature covers MessageSid: sign what is sent.
        official = sdk("twilio_check.js", {"auth_token": AUTH_TOKEN, "cases": [
            {"signed_url": signed, "url": "%s://%s%s" % (proto, host, target),
             "params": dict(params, MessageSid="SMspelling%d" % i)}
            for i, (_, signed, proto, host, target) in enumerate(self.URL_SPELLINGS)]})
        verdict = self.assert_same_verdicts(self.URL_SPELLINGS, official, send)
        # The library accepts both spellings of ' and refuses a changed URL.
        self.assertTrue(verdict["' signed, %27 received"])
        self.assertTrue(verdict["%27 signed, ' received"])
        self.assertFalse(verdict["another value"])
        self.assertFalse(verdict["http signed, https received"])

    def test_body_sha256_url_spellings_the_official_library_accepts(self):
        body = json.dumps({"From": "+14155550941", "Body": "json spellings"})
        digest = hashlib.sha256(body.encode()).hexdigest()
        cases = [
            ("as signed", "https://bot.example.com" + WEBHOOK + "?bodySHA256=" + digest,
             "https", "bot.example.com", WEBHOOK + "?bodySHA256=" + digest),
            ("default port received", "https://bot.example.com" + WEBHOOK + "?bodySHA256=" +
             digest, "https", "bot.example.com:443", WEBHOOK + "?bodySHA256=" + digest),
            ("' signed, %27 received", "https://bot.example.com" + WEBHOOK + "?n=O'B&bodySHA256=" +
             digest, "https", "bot.example.com", WEBHOOK + "?n=O%27B&bodySHA256=" + digest),
            ("%27 signed, ' received", "https://bot.example.com" + WEBHOOK + "?n=O%27B&bodySHA256="
             + digest, "https", "bot.example.com", WEBHOOK + "?n=O'B&bodySHA256=" + digest),
            ("hash in capitals", "https://bot.example.com" + WEBHOOK + "?bodySHA256=" +
             digest.upper(), "https", "bot.example.com", WEBHOOK + "?bodySHA256=" + digest.upper()),
            ("hash of another body", "https://bot.example.com" + WEBHOOK + "?bodySHA256=" +
             hashlib.sha256(b"{}").hexdigest(), "https", "bot.example.com",
             WEBHOOK + "?bodySHA256=" + hashlib.sha256(b"{}").hexdigest()),
        ]
        official = sdk("twilio_check.js", {"auth_token": AUTH_TOKEN, "cases": [
            {"signed_url": signed, "url": "%s://%s%s" % (proto, host, target), "body": body}
            for _, signed, proto, host, target in cases]})

        def send(i, case, signature):
            _, _, proto, host, target = case
            status, _, _, _ = self.post({}, body=body, signature=signature, path=target, headers={
                "Content-Type": "application/json", "X-Forwarded-Proto": proto,
                "X-Forwarded-Host": host})
            return status

        verdict = self.assert_same_verdicts(cases, official, send)
        self.assertTrue(verdict["' signed, %27 received"])
        self.assertFalse(verdict["hash of another body"])

    # -- messages ----------------------------------------------------------------------------

    def test_whatsapp_location(self):
        status, headers, body, recs = self.post(fixture("whatsapp_location.json"))
        self.assert_204(status, headers, body)
        [(form, got)] = self.got(recs)
        self.assertEqual((form["From"], form["To"]),
                         (["whatsapp:" + NUMBER], ["whatsapp:+14155550123"]))
        # Rasa's TwilioInput text for a location: the form's values as they were sent.
        self.assertEqual(got["text"],
                         "/locationData{'Latitude': 37.7879277,'Longitude': -122.4077906}")
        self.assertEqual(got["message_id"], "SMd0a4c1f2e3b4a5968778695a4b3c2d1e")
        self.assertEqual(got["metadata"], {
            "to": "whatsapp:" + NUMBER, "profile_name": "Ana", "wa_id": "14155550123",
            "location": {"lat": 37.7879277, "lng": -122.4077906,
                         "address": "1 Market St, San Francisco", "label": "Ferry Building"}})

    def test_whatsapp_media(self):
        status, headers, body, recs = self.post(fixture("whatsapp_media.json"))
        self.assert_204(status, headers, body)
        [(form, got)] = self.got(recs)
        self.assertEqual(got["text"], "my cat")
        base = "https://api.twilio.com/2010-04-01/Accounts/%s/Messages/" \
               "MM8c7b6a5f4e3d2c1b0a99887766554433/Media/" % ACCOUNT_SID
        self.assertEqual(got["metadata"]["media"], [
            {"url": base + "ME0001", "content_type": "image/jpeg"},
            {"url": base + "ME0002", "content_type": "image/png"}])

    def test_a_call_without_from_is_ignored(self):
        params = {"Body": "nobody", "MessageSid": "SMnobody"}
        status, headers, body, recs = self.post(params)
        self.assert_204(status, headers, body)
        self.assertEqual(recs, [])

    def test_text_is_split_on_blank_lines(self):
        status, headers, body, recs = self.post(self.sms("+14155550921", "text"))
        self.assert_204(status, headers, body)
        self.assertEqual(self.creates(recs), [
            {"From": [NUMBER], "To": ["+14155550921"], "Body": ["Hello"]},
            {"From": [NUMBER], "To": ["+14155550921"], "Body": ["World"]},
            {"From": [NUMBER], "To": ["+14155550921"], "Body": [" again"]}])

    def test_image_is_a_media_url(self):
        status, headers, body, recs = self.post(self.sms("whatsapp:+14155550922", "image"))
        self.assert_204(status, headers, body)
        self.assertEqual(self.creates(recs), [
            {"From": ["whatsapp:" + NUMBER], "To": ["whatsapp:+14155550922"],
             "MediaUrl": ["https://example.com/cat.png"]}])

    def test_buttons_fall_back_to_text(self):
        status, headers, body, recs = self.post(self.sms("+14155550923", "buttons"))
        self.assert_204(status, headers, body)
        self.assertEqual([f["Body"] for f in self.creates(recs)],
                         [["Pick"], ["1: Yes (/affirm)"], ["2: No (/deny)"]])

    def test_custom_json_is_messages_api_parameters(self):
        status, headers, body, recs = self.post(self.sms("+14155550924", "custom"))
        self.assert_204(status, headers, body)
        self.assertEqual(self.creates(recs), [{
            "From": [NUMBER], "To": ["+14155550924"], "Body": ["two pictures"],
            "MediaUrl": ["https://example.com/a.png", "https://example.com/b.png"],
            "StatusCallback": ["https://example.com/status"]}])
        status, headers, body, recs = self.post(self.sms("+14155550925", "custom service"))
        self.assert_204(status, headers, body)
        [form] = self.creates(recs)
        self.assertEqual(sorted(form), ["ContentSid", "ContentVariables", "MessagingServiceSid",
                                        "To"])
        self.assertEqual(json.loads(form["ContentVariables"][0]), {"1": "Ana"})
        self.assertEqual(form["MessagingServiceSid"], ["MG0123"])

    def test_an_api_error_is_logged_and_later_messages_still_go(self):
        status, headers, body, recs = self.post(self.sms("+15550001111", "fail then text"))
        self.assert_204(status, headers, body)
        self.assertEqual([f["Body"] for f in self.creates(recs)], [["first"], ["second"]])
        error_line(self.host, headers["x-request-id"], r"code 21211")
        self.assertNotIn(AUTH_TOKEN, self.host.log())


class WhatsAppNumberTests(unittest.TestCase):
    def test_a_whatsapp_twilio_number_answers_sms_from_its_plain_number(self):
        with StandIn(messages_api) as api:
            with serve_bot(credentials(api.url(), number="whatsapp:" + NUMBER), BOT) as host:
                url = "http://127.0.0.1:%d%s" % (host.port, WEBHOOK)
                for sender, expected_from in (("+14155550931", NUMBER),
                                              ("whatsapp:+14155550932", "whatsapp:" + NUMBER)):
                    params = {"From": sender, "Body": "image", "To": "x"}
                    status, _, _ = host.request(
                        "POST", WEBHOOK, body=urllib.parse.urlencode(params), headers={
                            "Content-Type": "application/x-www-form-urlencoded",
                            "X-Twilio-Signature": twilio_signature(url, params)})
                    self.assertEqual(status, 204)
                    rec = api.snapshot()[-1]
                    self.assertEqual(form_of(rec)["From"], [expected_from])
                    self.assertEqual(form_of(rec)["To"], [sender])


class StartupTests(unittest.TestCase):
    def test_required_parameters(self):
        full = {"account_sid": '"AC1"', "auth_token": '"t"', "twilio_number": '"+1555"'}
        for missing in full:
            text = "twilio:\n" + "".join("  %s: %s\n" % kv for kv in full.items()
                                         if kv[0] != missing)
            self.assertIn(missing, startup_error(self, check(text)))
        result = check("twilio:\n" + "".join("  %s: %s\n" % kv for kv in full.items()))
        self.assertEqual(result.returncode, 0, result.stderr)

    def test_an_unquoted_number_is_refused(self):
        line = startup_error(self, check("twilio:\n  account_sid: AC1\n  auth_token: t\n"
                                         "  twilio_number: +15005550006\n"))
        self.assertIn("twilio_number", line)
        self.assertIn("quote", line)


class LocationTests(StandInHostCase):
    """A shared location (Latitude and Longitude) is Rasa's /locationData{...} text."""

    @classmethod
    def start(cls):
        cls.api = cls.standin(messages_api)
        cls.host = serve_bot(credentials(cls.api.url("/")), BOT)

    def text_for(self, params):
        url = "http://127.0.0.1:%d%s" % (self.host.port, WEBHOOK)
        status, _, _ = self.host.request("POST", WEBHOOK, body=urllib.parse.urlencode(params),
                                         headers={"Content-Type":
                                                  "application/x-www-form-urlencoded",
                                                  "X-Twilio-Signature":
                                                      twilio_signature(url, params)})
        self.assertEqual(status, 204)
        body = form_of(self.api.snapshot()[-1])["Body"][0]
        return json.loads(body[4:])["text"]

    def test_the_values_are_written_as_sent(self):
        params = fresh_sid({"From": "whatsapp:+14155550950", "To": "whatsapp:" + NUMBER,
                            "Latitude": "52.520008", "Longitude": "13.404954", "Body": "",
                            "NumMedia": "0"})
        self.assertEqual(self.text_for(params),
                         "/locationData{'Latitude': 52.520008,'Longitude': 13.404954}")
        params = fresh_sid(dict(params, Latitude="-33.8", Longitude="151", Body="my place"))
        self.assertEqual(self.text_for(params),
                         "/locationData{'Latitude': -33.8,'Longitude': 151}")

    def test_one_coordinate_alone_is_no_location(self):
        params = fresh_sid({"From": "+14155550951", "Body": "hi", "Latitude": "52.5",
                            "Longitude": ""})
        self.assertEqual(self.text_for(params), "hi")


class RedeliveryTests(StandInHostCase):
    """Twilio retries a webhook call that failed (with the connection overrides #rc/#rt): each
    MessageSid is handed to the bot once; a repeat gets the usual 204 and is not processed."""

    @classmethod
    def start(cls):
        cls.api = cls.standin(messages_api)
        cls.host = serve_bot(credentials(cls.api.url("/")), BOT)

    def post(self, params):
        url = "http://127.0.0.1:%d%s" % (self.host.port, WEBHOOK)
        before = len(self.api.snapshot())
        status, headers, body = self.host.request(
            "POST", WEBHOOK, body=urllib.parse.urlencode(params), headers={
                "Content-Type": "application/x-www-form-urlencoded",
                "X-Twilio-Signature": twilio_signature(url, params)})
        self.assertEqual((status, body), (204, b""))
        return self.api.snapshot()[before:]

    def test_the_same_message_twice_is_processed_once(self):
        params = fresh_sid({"From": "+14155550960", "To": NUMBER, "Body": "only once"})
        self.assertEqual(len(self.post(params)), 1)
        self.assertEqual(self.post(params), [])

    def test_sms_message_sid_alone_counts_too(self):
        params = {"From": "+14155550961", "To": NUMBER, "Body": "old field",
                  "SmsMessageSid": "SMold%d" % next(SIDS)}
        self.assertEqual(len(self.post(params)), 1)
        self.assertEqual(self.post(params), [])

    def test_two_sids_are_two_messages(self):
        params = {"From": "+14155550962", "To": NUMBER, "Body": "same words"}
        self.assertEqual(len(self.post(fresh_sid(params))), 1)
        self.assertEqual(len(self.post(fresh_sid(params))), 1)

    def test_a_message_without_sid_is_processed_each_time(self):
        params = {"From": "+14155550963", "To": NUMBER, "Body": "no sid"}
        self.assertEqual(len(self.post(params)), 1)
        self.assertEqual(len(self.post(params)), 1)

    def test_the_same_message_at_once_on_two_connections(self):
        params = fresh_sid({"From": "+14155550964", "To": NUMBER, "Body": "racing"})
        results = in_threads([lambda: self.post(params)] * 2)
        self.assertFalse([r for r in results if isinstance(r, Exception)], results)
        sent = [r for r in self.api.snapshot() if form_of(r).get("To") == ["+14155550964"]]
        self.assertEqual(len(sent), 1, sent)

    def test_dedupe_ttl_must_be_a_number_of_seconds(self):
        assert_refused(self, 'twilio:\n  account_sid: "AC1"\n  auth_token: "t"\n'
                             '  twilio_number: "+1555"\n  dedupe_ttl: "x"\n', "dedupe_ttl")


if __name__ == "__main__":
    unittest.main()
