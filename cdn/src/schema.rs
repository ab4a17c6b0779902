//! Diesel tables of the publisher (migrations/cdn/*).

diesel::table! {
    contracts (id) {
        id -> Text,
        agent -> Text,
        endpoint -> Text,
        signed -> Text,
        read_per_kib -> BigInt,
        write_per_kib -> BigInt,
        block_bytes -> BigInt,
        used_bytes -> BigInt,
        end_s -> BigInt,
    }
}

diesel::table! {
    contents (id) {
        id -> Text,
        title -> Text,
        mime -> Text,
        size -> BigInt,
        piece_bytes -> BigInt,
        pieces -> Text,
        price_per_view -> BigInt,
        replicas_base -> Integer,
        manifest -> Text,
        created_s -> BigInt,
    }
}

diesel::table! {
    replicas (content_id, piece, contract_id) {
        content_id -> Text,
        piece -> Integer,
        contract_id -> Text,
        added_s -> BigInt,
    }
}

diesel::table! {
    views (id) {
        id -> Text,
        content_id -> Text,
        viewer -> Text,
        paid -> BigInt,
        created_s -> BigInt,
        expires_s -> BigInt,
        pieces_paid -> Text,
    }
}

diesel::allow_tables_to_appear_in_same_query!(contracts, contents, replicas, views);
