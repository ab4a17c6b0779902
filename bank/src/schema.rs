//! Diesel table definitions of the bank (migrations/bank/*).

diesel::table! {
    customers (name) {
        name -> Text,
        kind -> Text,
        password_hash -> Text,
        created_ms -> BigInt,
    }
}

diesel::table! {
    currencies (issuer) {
        issuer -> Text,
        url -> Text,
        code -> Text,
        deposits_after -> BigInt,
    }
}

diesel::table! {
    balances (customer, issuer) {
        customer -> Text,
        issuer -> Text,
        balance -> BigInt,
    }
}

diesel::table! {
    entries (seq) {
        seq -> BigInt,
        customer -> Text,
        issuer -> Text,
        amount -> BigInt,
        counterparty -> Text,
        counterparty_name -> Nullable<Text>,
        transaction_id -> Nullable<Text>,
        issuer_seq -> Nullable<BigInt>,
        state -> Text,
        token -> Nullable<Text>,
        counter -> Nullable<BigInt>,
        request -> Nullable<Text>,
        time_ms -> BigInt,
    }
}

diesel::table! {
    tokens (id) {
        id -> Text,
        secret_sha256 -> Text,
        customer -> Text,
        issuer -> Text,
        spend_limit -> BigInt,
        spent -> BigInt,
        label -> Text,
        revoked -> Integer,
        created_ms -> BigInt,
    }
}

diesel::table! {
    sessions (id_sha256) {
        id_sha256 -> Text,
        customer -> Text,
        csrf -> Text,
        expires_ms -> BigInt,
    }
}
