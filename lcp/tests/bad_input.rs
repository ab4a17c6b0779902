//! Every bad input DESIGN names gets its status and stable code, and moves no money.

mod util;

use lcp::config::IssuerConfig;
use protocol::{sign_request, verify_response, KeyPair};
use util::{backends, TestIssuer};

struct Raw<'a> {
    issuer: &'a TestIssuer,
    audience: String,
}

impl Raw<'_> {
    /// Send a transfer signed by `key`; `tweak` may change anything before it goes out.
    async fn send(
        &self,
        key: &KeyPair,
        body: &[u8],
        tweak: impl FnOnce(&mut Vec<(&'static str, String)>),
    ) -> (u16, serde_json::Value, Option<String>) {
        let auth = sign_request(
            key,
            &self.audience,
            "POST",
            "/lcp/v1/transfers",
            node::now_ms(),
            Some(node::now_ms()),
            body,
        );
        let mut headers = auth.headers();
        tweak(&mut headers);
        let mut req = self
            .issuer
            .http
            .post(format!("{}/lcp/v1/transfers", self.issuer.url()))
            .body(body.to_vec());
        for (n, v) in headers {
            req = req.header(n, v);
        }
        let resp = req.send().await.expect("send");
        let status = resp.status().as_u16();
        let sig = resp
            .headers()
            .get("LCP-Signature")
            .map(|v| v.to_str().expect("ascii").to_owned());
        let json = resp.json().await.expect("json error body");
        (status, json, sig)
    }

    async fn get(&self, key: &KeyPair, pq: &str) -> (u16, serde_json::Value) {
        let auth = sign_request(key, &self.audience, "GET", pq, node::now_ms(), None, b"");
        let mut req = self.issuer.http.get(format!("{}{pq}", self.issuer.url()));
        for (n, v) in auth.headers() {
            req = req.header(n, v);
        }
        let resp = req.send().await.expect("send");
        (resp.status().as_u16(), resp.json().await.expect("json"))
    }
}

fn code(v: &serde_json::Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("<none>")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_inputs_get_their_codes_and_move_no_money() {
    for (backend, database) in backends("badinput") {
        let issuer = TestIssuer::start(
            database.url(),
            IssuerConfig {
                max_amount: 1_000,
                max_body_bytes: 1_024,
                ..IssuerConfig::default()
            },
        );
        let payer = issuer.funded_wallet("payer", 500).await;
        let (payee, _) = issuer.wallet("payee");
        let key = payer.signed().key();
        let to = payee.signed().key().entity().to_string();
        let raw = Raw {
            issuer: &issuer,
            audience: issuer.running.entity.to_string(),
        };
        let ok_body = format!(r#"{{"recipient":"{to}","amount":5}}"#);

        let cases: Vec<(&str, String, u16, &str)> = vec![
            (
                "malformed JSON",
                "{\"recipient\":".into(),
                400,
                "invalid_json",
            ),
            (
                "unknown field",
                format!(r#"{{"recipient":"{to}","amount":5,"memo":"x"}}"#),
                400,
                "invalid_json",
            ),
            (
                "amount as string",
                format!(r#"{{"recipient":"{to}","amount":"5"}}"#),
                400,
                "invalid_json",
            ),
            (
                "amount 0",
                format!(r#"{{"recipient":"{to}","amount":0}}"#),
                400,
                "invalid_amount",
            ),
            (
                "negative amount",
                format!(r#"{{"recipient":"{to}","amount":-5}}"#),
                400,
                "invalid_amount",
            ),
            (
                "fractional amount",
                format!(r#"{{"recipient":"{to}","amount":1.5}}"#),
                400,
                "invalid_amount",
            ),
            (
                "amount above max",
                format!(r#"{{"recipient":"{to}","amount":1001}}"#),
                400,
                "invalid_amount",
            ),
            (
                "bad recipient",
                r#"{"recipient":"bob","amount":5}"#.into(),
                400,
                "invalid_recipient",
            ),
            (
                "paying oneself",
                format!(r#"{{"recipient":"{}","amount":5}}"#, key.entity()),
                400,
                "invalid_recipient",
            ),
            (
                "bad transaction id",
                format!(r#"{{"recipient":"{to}","amount":5,"transaction_id":"a b"}}"#),
                400,
                "invalid_transaction_id",
            ),
            (
                "userid with capitals",
                format!(r#"{{"recipient":"{to}","amount":5,"userid":"Bob"}}"#),
                400,
                "invalid_userid",
            ),
            (
                "userid too long",
                format!(
                    r#"{{"recipient":"{to}","amount":5,"userid":"{}"}}"#,
                    "b".repeat(65)
                ),
                400,
                "invalid_userid",
            ),
            (
                "from_name that is no name",
                format!(r#"{{"recipient":"{to}","amount":5,"from_name":"alice"}}"#),
                400,
                "invalid_name",
            ),
            (
                "more than the balance",
                format!(r#"{{"recipient":"{to}","amount":501}}"#),
                402,
                "insufficient_funds",
            ),
        ];
        for (what, body, status, expected) in &cases {
            let (s, json, sig) = raw.send(key, body.as_bytes(), |_| {}).await;
            assert_eq!(
                (s, code(&json)),
                (*status, *expected),
                "{backend}: {what}: {json}"
            );
            // Authenticated commands get a receipt even when refused.
            assert!(
                sig.is_some(),
                "{backend}: {what}: refused commands are signed too"
            );
        }

        // A refused command's receipt verifies.
        let body = format!(r#"{{"recipient":"{to}","amount":0}}"#);
        let auth = sign_request(
            key,
            &raw.audience,
            "POST",
            "/lcp/v1/transfers",
            node::now_ms(),
            Some(42),
            body.as_bytes(),
        );
        let mut req = issuer
            .http
            .post(format!("{}/lcp/v1/transfers", issuer.url()))
            .body(body);
        for (n, v) in auth.headers() {
            req = req.header(n, v);
        }
        let resp = req.send().await.expect("send");
        let sig = resp
            .headers()
            .get("LCP-Signature")
            .expect("receipt")
            .to_str()
            .expect("ascii")
            .to_owned();
        let bytes = resp.bytes().await.expect("body");
        assert!(verify_response(
            &issuer.running.entity,
            key.entity().as_str(),
            42,
            400,
            &bytes,
            &sig
        ));

        let other = KeyPair::generate().expect("key");
        let header_cases: Vec<HeaderCase> = vec![
            (
                "wrong signature",
                Box::new(|h: &mut Vec<_>| {
                    set(h, "LCP-Signature", protocol::b64_encode(&[7u8; 64]))
                }),
                401,
                "invalid_signature",
            ),
            (
                "signed by another key",
                Box::new(|h: &mut Vec<_>| set(h, "LCP-Entity", other.entity().to_string())),
                401,
                "invalid_signature",
            ),
            (
                "missing signature",
                Box::new(|h: &mut Vec<_>| h.retain(|(n, _)| *n != "LCP-Signature")),
                401,
                "missing_header",
            ),
            (
                "missing entity",
                Box::new(|h: &mut Vec<_>| h.retain(|(n, _)| *n != "LCP-Entity")),
                401,
                "missing_header",
            ),
            (
                "missing time",
                Box::new(|h: &mut Vec<_>| h.retain(|(n, _)| *n != "LCP-Time")),
                401,
                "missing_header",
            ),
            (
                "missing counter",
                Box::new(|h: &mut Vec<_>| h.retain(|(n, _)| *n != "LCP-Counter")),
                401,
                "missing_counter",
            ),
            (
                "garbage time",
                Box::new(|h: &mut Vec<_>| set(h, "LCP-Time", "soon".into())),
                400,
                "invalid_header",
            ),
        ];
        for (what, tweak, status, expected) in header_cases {
            let (s, json, _) = raw.send(key, ok_body.as_bytes(), tweak).await;
            assert_eq!(
                (s, code(&json)),
                (status, expected),
                "{backend}: {what}: {json}"
            );
        }

        // Wrong audience: signed for another server.
        let wrong_aud = Raw {
            issuer: &issuer,
            audience: other.entity().to_string(),
        };
        let (s, json, _) = wrong_aud.send(key, ok_body.as_bytes(), |_| {}).await;
        assert_eq!(
            (s, code(&json)),
            (401, "invalid_signature"),
            "{backend}: wrong audience"
        );

        // Stale time: a correctly signed request from 301 s ago.
        let old = node::now_ms() - 301_000;
        let auth = sign_request(
            key,
            &raw.audience,
            "POST",
            "/lcp/v1/transfers",
            old,
            Some(5),
            ok_body.as_bytes(),
        );
        let mut req = issuer
            .http
            .post(format!("{}/lcp/v1/transfers", issuer.url()))
            .body(ok_body.clone());
        for (n, v) in auth.headers() {
            req = req.header(n, v);
        }
        let resp = req.send().await.expect("send");
        assert_eq!(resp.status().as_u16(), 401);
        assert_eq!(
            code(&resp.json().await.expect("json")),
            "stale_time",
            "{backend}"
        );

        // A body over the limit.
        let big = format!(
            r#"{{"recipient":"{to}","amount":5,"transaction_id":"{}"}}"#,
            "x".repeat(2_000)
        );
        let (s, json, _) = raw.send(key, big.as_bytes(), |_| {}).await;
        assert_eq!(
            (s, code(&json)),
            (413, "body_too_large"),
            "{backend}: {json}"
        );

        // Queries: bad cursor, stale query, unknown path.
        let (s, json) = raw.get(key, "/lcp/v1/deposits?after=-1").await;
        assert_eq!((s, code(&json)), (400, "invalid_query"), "{backend}");
        let (s, json) = raw.get(key, "/lcp/v1/deposits?after=1&color=red").await;
        assert_eq!((s, code(&json)), (400, "invalid_query"), "{backend}");
        let (s, json) = raw.get(key, "/lcp/v1/nothing").await;
        assert_eq!((s, code(&json)), (404, "not_found"), "{backend}");
        let resp = issuer
            .http
            .get(format!("{}/lcp/v1/balance", issuer.url()))
            .send()
            .await
            .expect("send");
        assert_eq!(
            resp.status().as_u16(),
            401,
            "an unsigned balance query is refused"
        );

        // None of it moved money.
        assert_eq!(
            payer.balance().await.expect("balance").balance,
            500,
            "{backend}"
        );
        assert_eq!(
            payee.balance().await.expect("balance").balance,
            0,
            "{backend}"
        );
        issuer.assert_sum_zero().await;
    }
}

type Tweak<'a> = Box<dyn FnOnce(&mut Vec<(&'static str, String)>) + 'a>;
type HeaderCase<'a> = (&'static str, Tweak<'a>, u16, &'static str);

fn set(headers: &mut Vec<(&'static str, String)>, name: &'static str, value: String) {
    headers.retain(|(n, _)| *n != name);
    headers.push((name, value));
}
