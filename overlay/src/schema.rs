//! Diesel tables of the peer (migrations/peer/*); `credit_lines` is `node::credit`'s.

diesel::table! {
    peer_neighbors (entity) {
        entity -> Text,
        url -> Text,
        kind -> Text,
        changed_ms -> BigInt,
    }
}

diesel::table! {
    peer_solicitations (solicitor, id) {
        solicitor -> Text,
        id -> Text,
        document -> Text,
        currency -> Text,
        fee -> BigInt,
        paid_by -> Text,
        forwarded -> BigInt,
        answer -> Nullable<Text>,
        seen_ms -> BigInt,
    }
}

diesel::table! {
    peer_bids (id) {
        id -> Text,
        solicitor -> Text,
        document -> Text,
        currency -> Text,
        price -> BigInt,
        expires_ms -> BigInt,
        down_entity -> Nullable<Text>,
        down_url -> Nullable<Text>,
        down_bid -> Nullable<Text>,
        down_price -> Nullable<BigInt>,
        accepted_ms -> Nullable<BigInt>,
        buyer -> Nullable<Text>,
        paid_by -> Nullable<Text>,
        instructions -> Nullable<Text>,
        contested_ms -> Nullable<BigInt>,
        refunded -> BigInt,
        down_refunded -> BigInt,
        made_ms -> BigInt,
    }
}

diesel::table! {
    peer_tokens (token) {
        token -> Text,
        bid -> Text,
        document -> Text,
        buyer -> Text,
        expires_ms -> BigInt,
        used_ms -> Nullable<BigInt>,
    }
}

diesel::table! {
    peer_credit (buyer, currency) {
        buyer -> Text,
        currency -> Text,
        balance -> BigInt,
    }
}

diesel::table! {
    peer_cursors (issuer) {
        issuer -> Text,
        next -> BigInt,
    }
}
