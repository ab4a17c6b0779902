//! Diesel table definitions of the issuer's ledger (migrations/lcp/*).

diesel::table! {
    accounts (entity) {
        entity -> Text,
        balance -> BigInt,
    }
}

diesel::table! {
    transfers (seq) {
        seq -> BigInt,
        sender -> Text,
        recipient -> Text,
        amount -> BigInt,
        fee -> BigInt,
        transaction_id -> Nullable<Text>,
        time_ms -> BigInt,
    }
}

diesel::table! {
    commands (counter, entity) {
        counter -> BigInt,
        entity -> Text,
        body_sha256 -> Text,
        status -> Integer,
        response -> Text,
    }
}
