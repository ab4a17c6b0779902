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
        request_id -> Nullable<Text>,
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

diesel::table! {
    exchange_orders (id) {
        id -> Text,
        trader -> Text,
        sell_issuer -> Text,
        buy_issuer -> Text,
        sell_amount -> BigInt,
        buy_amount -> BigInt,
        sell_left -> BigInt,
        state -> Text,
        seq -> BigInt,
        created_ms -> BigInt,
    }
}

diesel::table! {
    exchange_trades (id) {
        id -> Text,
        taker -> Text,
        maker -> Text,
        taker_order -> Text,
        maker_order -> Text,
        taker_issuer -> Text,
        taker_amount -> BigInt,
        maker_issuer -> Text,
        maker_amount -> BigInt,
        steps -> Integer,
        half -> Integer,
        claimed -> Integer,
        turn_ms -> BigInt,
        state -> Text,
        defaulter -> Nullable<Text>,
        created_ms -> BigInt,
    }
}

diesel::table! {
    exchange_steps (trade, half) {
        trade -> Text,
        half -> Integer,
        payer -> Text,
        issuer -> Text,
        amount -> BigInt,
        claimed_ms -> BigInt,
        confirmed_ms -> Nullable<BigInt>,
        recorded -> Integer,
    }
}

diesel::table! {
    exchange_traders (entity) {
        entity -> Text,
        completed -> BigInt,
        defaults -> BigInt,
        disputes -> BigInt,
    }
}
