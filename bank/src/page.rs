//! The customers' web page (DESIGN 14): sign up, log in, balances and the statement per
//! currency, a transfer, and app tokens granted and revoked. Server-rendered HTML, every
//! value escaped; no script.
//!
//! Sessions are a cookie (`HttpOnly`, `SameSite=Strict`, `Secure` over TLS) naming a row of
//! `sessions`; every form carries the session's CSRF token, and a form without the right
//! one is refused (`403`) whatever the cookie says. An expired session is sent to the login
//! page with a notice.

use std::sync::Arc;

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use node::html::escape as esc;
use serde::Deserialize;

use crate::error::Error;
use crate::serve::Bank;
use crate::session::{self, NoSession, Session};
use crate::store;

type State = web::Data<Arc<Bank>>;

/// Statement lines shown.
const STATEMENT_LINES_MAX: i64 = 50;

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:1.5em auto;max-width:60em;padding:0 1em;color:#222}\
h1{font-size:1.5em}h2{font-size:1.15em;margin-top:1.6em}\
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(11em,1fr));gap:.8em}\
.card{border:1px solid #ddd;border-radius:6px;padding:.6em 1em}\
.card b{display:block;font-size:1.4em}.card span{color:#666;font-size:.85em}\
table{border-collapse:collapse;margin:.6em 0;width:100%}td,th{border:1px solid #ddd;padding:.3em .6em;text-align:left}\
th{background:#f4f4f4}code{font-size:.85em;word-break:break-all}.none{color:#777}\
form.box{border:1px solid #ddd;border-radius:6px;padding:.8em 1em;margin:.6em 0;display:flex;flex-wrap:wrap;gap:.6em;align-items:end}\
label{display:flex;flex-direction:column;font-size:.85em;color:#444}input,select{font-size:1em;padding:.3em}\
.notice{background:#eef7ee;border:1px solid #9c9;padding:.5em 1em;border-radius:6px}\
.error{background:#fbeeee;border:1px solid #d99;padding:.5em 1em;border-radius:6px}\
.in{color:#063}.out{color:#a00}\
@media (max-width:600px){.cards{grid-template-columns:1fr}td,th{font-size:.85em}}";

fn html(status: actix_web::http::StatusCode, title: &str, body: &str) -> HttpResponse {
    HttpResponse::build(status)
        .content_type("text/html; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .body(format!(
            "<!doctype html><html><head><meta charset=utf-8>\
             <meta name=viewport content=\"width=device-width,initial-scale=1\">\
             <title>{}</title><style>{STYLE}</style></head><body>{body}</body></html>",
            esc(title)
        ))
}

fn see_other(to: &str) -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, to))
        .finish()
}

/// The session cookie's value in a request.
fn cookie_value(req: &HttpRequest) -> Option<String> {
    req.headers()
        .get_all(header::COOKIE)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == session::COOKIE)
        .map(|(_, v)| v.to_owned())
}

async fn current_session(
    req: &HttpRequest,
    bank: &Bank,
) -> Result<Result<Session, NoSession>, Error> {
    let Some(cookie) = cookie_value(req) else {
        return Ok(Err(NoSession::Missing));
    };
    bank.db
        .run(move |conn| session::find(conn, &cookie, node::now_ms()))
        .await
}

fn login_redirect(why: NoSession) -> HttpResponse {
    match why {
        NoSession::Missing => see_other("/login"),
        NoSession::Expired => see_other("/login?expired=1"),
    }
}

#[derive(Deserialize)]
pub struct LoginQuery {
    #[serde(default)]
    expired: Option<u8>,
}

/// `GET /login`
pub async fn login_page(q: web::Query<LoginQuery>, bank: State) -> HttpResponse {
    let notice = if q.expired.is_some() {
        "<p class=error>Your session has expired: log in again.</p>"
    } else {
        ""
    };
    html(
        actix_web::http::StatusCode::OK,
        "Log in",
        &login_form(&bank, notice),
    )
}

fn login_form(bank: &Bank, notice: &str) -> String {
    format!(
        "<h1>Bank at {host}</h1>{notice}\
         <form class=box method=post action=/login>\
         <label>Name<input name=name autocomplete=username required></label>\
         <label>Password<input name=password type=password autocomplete=current-password required></label>\
         <button type=submit>Log in</button></form>\
         <p>No account? <a href=/signup>Sign up</a>: you will be <code>name@{host}</code>.</p>",
        host = esc(bank.name_host())
    )
}

#[derive(Deserialize)]
pub struct Credentials {
    name: String,
    password: String,
}

#[derive(Deserialize)]
pub struct SignUp {
    name: String,
    password: String,
    /// The checkbox: `on` when the customer wants a key of its own kept by the bank.
    #[serde(default)]
    transparent: Option<String>,
}

fn session_cookie(bank: &Bank, value: &str, max_age_s: u64) -> String {
    format!(
        "{}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age_s}{}",
        session::COOKIE,
        if bank.secure_cookies { "; Secure" } else { "" }
    )
}

async fn start_session(bank: &Bank, customer: String) -> Result<HttpResponse, Error> {
    let ttl = bank.session_ttl_ms;
    let cookie = bank
        .db
        .run(move |conn| session::open(conn, &customer, ttl, node::now_ms()))
        .await?;
    Ok(HttpResponse::SeeOther()
        .insert_header((header::LOCATION, "/"))
        .insert_header((
            header::SET_COOKIE,
            session_cookie(bank, &cookie, ttl / 1000),
        ))
        .finish())
}

/// `POST /login`: a session on the right password; the same refusal for an unknown name.
pub async fn login(form: web::Form<Credentials>, bank: State) -> Result<HttpResponse, Error> {
    let Credentials { name, password } = form.into_inner();
    // Argon2 is deliberately slow: off the HTTP workers.
    let customer = bank
        .db
        .run(move |conn| session::check_password(conn, &name, &password))
        .await?;
    match customer {
        Some(c) => start_session(&bank, c).await,
        None => Ok(html(
            actix_web::http::StatusCode::UNAUTHORIZED,
            "Log in",
            &login_form(&bank, "<p class=error>Wrong name or password.</p>"),
        )),
    }
}

/// `GET /signup`
pub async fn signup_page(bank: State) -> HttpResponse {
    html(
        actix_web::http::StatusCode::OK,
        "Sign up",
        &signup_form(&bank, ""),
    )
}

fn signup_form(bank: &Bank, notice: &str) -> String {
    format!(
        "<h1>Open an account at {host}</h1>{notice}\
         <form class=box method=post action=/signup>\
         <label>Name (a-z, 0-9, . _ -)<input name=name required maxlength=64></label>\
         <label>Password (8 characters or more)<input name=password type=password autocomplete=new-password required></label>\
         <label class=check><input type=checkbox name=transparent> Keep a key of my own (a transparent account: people pay my key, the bank keeps it and pays with it)</label>\
         <button type=submit>Sign up</button></form><p><a href=/login>Log in</a></p>",
        host = esc(bank.name_host())
    )
}

/// `POST /signup`: a new customer (opaque, or transparent when asked), logged in.
pub async fn signup(form: web::Form<SignUp>, bank: State) -> Result<HttpResponse, Error> {
    let SignUp {
        name,
        password,
        transparent,
    } = form.into_inner();
    let transparent = transparent.is_some();
    let refuse = |message: String| {
        html(
            actix_web::http::StatusCode::BAD_REQUEST,
            "Sign up",
            &signup_form(&bank, &format!("<p class=error>{}</p>", esc(&message))),
        )
    };
    if !protocol::name::is_userid(&name) {
        return Ok(refuse(
            "A name is 1 to 64 characters of a-z, 0-9, '.', '_' and '-'.".into(),
        ));
    }
    let added = {
        let (name, data_dir) = (name.clone(), bank.data_dir.clone());
        bank.db
            .run(move |conn| {
                let hash = crate::password::hash(&password)?;
                if store::customer_exists(conn, &name)? {
                    return Err(Error::NameTaken(name));
                }
                let kind = if transparent {
                    crate::custody::create_key(&data_dir, &name)?;
                    store::TRANSPARENT
                } else {
                    store::OPAQUE
                };
                store::add_customer(conn, &name, kind, &hash, node::now_ms())
            })
            .await
    };
    match added {
        Ok(()) => start_session(&bank, name).await,
        Err(e @ (Error::NameTaken(_) | Error::Password(_))) => Ok(refuse(e.to_string())),
        Err(e) => Err(e),
    }
}

/// `POST /logout`
pub async fn logout(
    req: HttpRequest,
    form: web::Form<CsrfOnly>,
    bank: State,
) -> Result<HttpResponse, Error> {
    match checked_session(&req, &bank, &form.csrf).await? {
        Ok(_) => {
            if let Some(cookie) = cookie_value(&req) {
                bank.db
                    .run(move |conn| session::close(conn, &cookie))
                    .await?;
            }
            Ok(HttpResponse::SeeOther()
                .insert_header((header::LOCATION, "/login"))
                .insert_header((header::SET_COOKIE, session_cookie(&bank, "", 0)))
                .finish())
        }
        Err(refusal) => Ok(refusal),
    }
}

#[derive(Deserialize)]
pub struct CsrfOnly {
    csrf: String,
}

/// The session of a form's request, or the answer refusing it: to the login page without a
/// live session, `403` when the form's CSRF token is not the session's (a forged form).
async fn checked_session(
    req: &HttpRequest,
    bank: &Bank,
    csrf: &str,
) -> Result<Result<Session, HttpResponse>, Error> {
    Ok(match current_session(req, bank).await? {
        Err(why) => Err(login_redirect(why)),
        Ok(s) if !session::csrf_matches(&s, csrf) => Err(html(
            actix_web::http::StatusCode::FORBIDDEN,
            "Refused",
            "<h1>Refused</h1><p class=error>This form did not come from your bank's page \
             (its CSRF token is wrong). Nothing was done.</p><p><a href=/>Back</a></p>",
        )),
        Ok(s) => Ok(s),
    })
}

#[derive(Deserialize)]
pub struct AccountQuery {
    #[serde(default)]
    notice: Option<String>,
}

/// `GET /`: the account page, or the login page without a session.
pub async fn account(
    req: HttpRequest,
    q: web::Query<AccountQuery>,
    bank: State,
) -> Result<HttpResponse, Error> {
    match current_session(&req, &bank).await? {
        Err(why) => Ok(login_redirect(why)),
        Ok(s) => {
            let notice = q
                .notice
                .as_deref()
                .map(|n| format!("<p class=notice>{}</p>", esc(n)))
                .unwrap_or_default();
            Ok(html(
                actix_web::http::StatusCode::OK,
                "Account",
                &render_account(&bank, &s, &notice).await?,
            ))
        }
    }
}

async fn render_account(bank: &Bank, s: &Session, notice: &str) -> Result<String, Error> {
    let customer = s.customer.clone();
    let (mut balances, mut lines, tokens) = bank
        .db
        .run(move |conn| {
            Ok::<_, Error>((
                store::balances_of(conn, &customer)?,
                store::statement(conn, &customer, STATEMENT_LINES_MAX)?,
                store::tokens_of(conn, &customer)?,
            ))
        })
        .await?;
    // A transparent account's money is its own key's, at each issuer.
    let custody = crate::custody::Custody::of(bank, &s.customer).await?;
    let (entity, own) = custody.entity(bank);
    if own {
        balances.clear();
        for c in &bank.currencies {
            let b = crate::custody::balance(bank, &custody, &s.customer, &c.issuer).await?;
            balances.push((c.issuer.clone(), b));
        }
        // Its statement is its key's deposits at each issuer (what it paid, the issuers
        // list to no one but the payee).
        lines.clear();
        for c in &bank.currencies {
            let Some(page) =
                crate::custody::own_deposits(bank, &custody, &c.issuer, 0, 0, None).await?
            else {
                continue;
            };
            lines.extend(page.deposits.into_iter().map(|d| store::Line {
                seq: i64::try_from(d.seq).unwrap_or(i64::MAX),
                issuer: c.issuer.clone(),
                amount: i64::try_from(d.amount).unwrap_or(i64::MAX),
                counterparty: d.from,
                counterparty_name: d.from_name,
                transaction_id: d.transaction_id,
                state: "received".into(),
                time_ms: i64::try_from(d.time).unwrap_or(i64::MAX),
            }));
        }
        lines.sort_by_key(|l| std::cmp::Reverse(l.time_ms));
        lines.truncate(usize::try_from(STATEMENT_LINES_MAX).unwrap_or(usize::MAX));
    }
    let code_of = |issuer: &str| {
        bank.currency(issuer)
            .map(|c| c.code.clone())
            .unwrap_or_else(|| issuer.to_owned())
    };
    let csrf = esc(&s.csrf);
    let mut h = format!(
        "<h1>{name}@{host}</h1>{notice}\
         <form method=post action=/logout><input type=hidden name=csrf value=\"{csrf}\">\
         <button type=submit>Log out</button></form>{kind}<h2>Balances</h2><div class=cards>",
        name = esc(&s.customer),
        host = esc(bank.name_host()),
        kind = if own {
            format!(
                "<p id=kind>A transparent account: your key is <code>{}</code>; the bank keeps \
                 it and pays with it.</p>",
                esc(entity.as_str())
            )
        } else {
            "<p id=kind>An opaque account, held under the bank's key.</p>".to_owned()
        },
    );
    for c in &bank.currencies {
        let balance = balances
            .iter()
            .find(|(i, _)| *i == c.issuer)
            .map(|(_, b)| *b)
            .unwrap_or(0);
        h.push_str(&format!(
            "<div class=card><b id=\"balance-{code}\">{balance}</b><span>{code} (minor units)</span></div>",
            code = esc(&c.code)
        ));
    }
    h.push_str("</div><h2>Transfer</h2><form class=box method=post action=/transfer>");
    h.push_str(&format!("<input type=hidden name=csrf value=\"{csrf}\">"));
    h.push_str(
        "<label>To (entity id or name@host)<input name=recipient required size=40></label>\
                <label>Amount (minor units)<input name=amount type=number min=1 required></label>",
    );
    h.push_str(&currency_select(bank));
    h.push_str("<button type=submit>Send</button></form>");

    h.push_str("<h2>Statement</h2>");
    if lines.is_empty() {
        h.push_str("<p class=none>Nothing yet. Give people your name to be paid.</p>");
    } else {
        h.push_str("<table id=statement><tr><th>#</th><th>amount</th><th>currency</th><th>from / to</th><th>transaction</th><th>state</th></tr>");
        for l in &lines {
            let who = l
                .counterparty_name
                .clone()
                .unwrap_or_else(|| l.counterparty.clone());
            h.push_str(&format!(
                "<tr><td>{}</td><td class={}>{:+}</td><td>{}</td><td><code>{}</code></td><td>{}</td><td>{}</td></tr>",
                l.seq,
                if l.amount >= 0 { "in" } else { "out" },
                l.amount,
                esc(&code_of(&l.issuer)),
                esc(&who),
                esc(l.transaction_id.as_deref().unwrap_or("-")),
                esc(&l.state)
            ));
        }
        h.push_str("</table>");
    }

    h.push_str("<h2>Apps</h2><p>An app (a storage agent, a backup, a player) pays for you with a token, in one currency, up to its limit.</p>");
    if !tokens.is_empty() {
        h.push_str("<table id=tokens><tr><th>token</th><th>for</th><th>currency</th><th>spent / limit</th><th></th></tr>");
        for t in &tokens {
            let action = if t.revoked != 0 {
                "revoked".to_owned()
            } else {
                format!(
                    "<form method=post action=\"/tokens/{id}/revoke\"><input type=hidden name=csrf value=\"{csrf}\">\
                     <button type=submit>Revoke</button></form>",
                    id = esc(&t.id)
                )
            };
            h.push_str(&format!(
                "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{} / {}</td><td>{action}</td></tr>",
                esc(&t.id),
                esc(&t.label),
                esc(&code_of(&t.issuer)),
                t.spent,
                t.spend_limit
            ));
        }
        h.push_str("</table>");
    }
    h.push_str(&format!(
        "<form class=box method=post action=/tokens><input type=hidden name=csrf value=\"{csrf}\">\
         <label>For<input name=label maxlength=64 placeholder=backup></label>\
         <label>Limit (minor units)<input name=limit type=number min=1 required></label>{}\
         <button type=submit>Grant a token</button></form>",
        currency_select(bank)
    ));
    Ok(h)
}

fn currency_select(bank: &Bank) -> String {
    let mut h = String::from("<label>Currency<select name=issuer>");
    for c in &bank.currencies {
        h.push_str(&format!(
            "<option value=\"{}\">{}</option>",
            esc(&c.issuer),
            esc(&c.code)
        ));
    }
    h.push_str("</select></label>");
    h
}

#[derive(Deserialize)]
pub struct TransferForm {
    csrf: String,
    recipient: String,
    amount: String,
    issuer: String,
}

/// `POST /transfer`: the customer pays from the page.
pub async fn transfer(
    req: HttpRequest,
    form: web::Form<TransferForm>,
    bank: State,
) -> Result<HttpResponse, Error> {
    let s = match checked_session(&req, &bank, &form.csrf).await? {
        Ok(s) => s,
        Err(refusal) => return Ok(refusal),
    };
    let outcome = async {
        let amount: u64 = form
            .amount
            .trim()
            .parse()
            .map_err(|_| Error::InvalidAmount {
                max: i64::MAX as u64,
            })?;
        let payee = clients::names::resolve_with(form.recipient.trim(), &bank.http)
            .await
            .map_err(|e| Error::InvalidRecipient(e.to_string()))?;
        let payer = crate::pay::Payer {
            customer: s.customer.clone(),
            issuer: form.issuer.clone(),
            token: None,
        };
        let order = crate::pay::Order {
            payee,
            amount,
            transaction_id: None,
            request_id: None,
        };
        crate::pay::pay(&bank, &payer, order)
            .await
            .map(|paid| (amount, paid))
    }
    .await;
    let notice = match outcome {
        Ok((amount, paid)) => format!(
            "Sent {amount} (fee {}) to {}.",
            paid.fee,
            form.recipient.trim()
        ),
        Err(e) => format!("Not sent: {e}"),
    };
    Ok(see_other(&format!(
        "/?notice={}",
        node::client::encode_query_value(&notice)
    )))
}

#[derive(Deserialize)]
pub struct GrantForm {
    csrf: String,
    issuer: String,
    limit: String,
    #[serde(default)]
    label: String,
}

/// `POST /tokens`: grant a token; the page shows it once.
pub async fn grant(
    req: HttpRequest,
    form: web::Form<GrantForm>,
    bank: State,
) -> Result<HttpResponse, Error> {
    let s = match checked_session(&req, &bank, &form.csrf).await? {
        Ok(s) => s,
        Err(refusal) => return Ok(refusal),
    };
    let notice = match form.limit.trim().parse::<u64>() {
        Ok(limit) if limit > 0 && bank.currency(&form.issuer).is_some() => {
            let (customer, issuer, label) = (s.customer.clone(), form.issuer.clone(), form.label.clone());
            match bank
                .db
                .run(move |conn| store::grant_token(conn, &customer, &issuer, limit, &label, node::now_ms()))
                .await
            {
                Ok((_, token)) => format!(
                    "<p class=notice>New token (shown once; give it to the app): <code id=new-token>{}</code></p>",
                    esc(&token)
                ),
                Err(e) => format!("<p class=error>{}</p>", esc(&e.to_string())),
            }
        }
        _ => "<p class=error>The limit must be a whole number of minor units above 0, in a currency of this bank.</p>".to_owned(),
    };
    Ok(html(
        actix_web::http::StatusCode::OK,
        "Account",
        &render_account(&bank, &s, &notice).await?,
    ))
}

/// `POST /tokens/{id}/revoke`
pub async fn revoke(
    req: HttpRequest,
    path: web::Path<String>,
    form: web::Form<CsrfOnly>,
    bank: State,
) -> Result<HttpResponse, Error> {
    let s = match checked_session(&req, &bank, &form.csrf).await? {
        Ok(s) => s,
        Err(refusal) => return Ok(refusal),
    };
    let id = path.into_inner();
    let customer = s.customer.clone();
    let revoked = {
        let id = id.clone();
        bank.db
            .run(move |conn| store::revoke_own_token(conn, &customer, &id))
            .await?
    };
    let notice = if revoked {
        format!("Token {id} revoked: its app can no longer pay.")
    } else {
        format!("You have no token {id}.")
    };
    Ok(see_other(&format!(
        "/?notice={}",
        node::client::encode_query_value(&notice)
    )))
}
