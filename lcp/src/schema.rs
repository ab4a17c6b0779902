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

// `commands` is the shared command log: `node::commands`.
