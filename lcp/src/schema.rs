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
        userid -> Nullable<Text>,
        from_name -> Nullable<Text>,
    }
}

// `commands` is the shared command log: `node::commands`.

diesel::table! {
    chains (chain) {
        chain -> Text,
        payer -> Text,
        root -> Text,
        length -> BigInt,
        unit -> BigInt,
        expires_at_s -> BigInt,
        touchstone -> Text,
        closed -> Integer,
    }
}

diesel::table! {
    chain_blocks (chain, vendor, block_from) {
        chain -> Text,
        vendor -> Text,
        block_from -> BigInt,
        block_end -> BigInt,
        signature -> Text,
        redeemed_to -> BigInt,
    }
}

diesel::table! {
    frauds (seq) {
        seq -> BigInt,
        chain -> Text,
        payer -> Text,
        shortfall -> BigInt,
        proof -> Text,
    }
}
