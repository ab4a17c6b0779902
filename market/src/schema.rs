//! Diesel tables of the market (migrations/market/*).

diesel::table! {
    agents (entity) {
        entity -> Text,
        endpoint -> Text,
        network -> Text,
        offer -> Text,
        offer_expires_s -> BigInt,
        last_heartbeat_s -> BigInt,
        endpoint_checked_s -> BigInt,
        alpha -> Double,
        beta -> Double,
        audits_passed -> BigInt,
        audits_failed -> BigInt,
        online -> Integer,
        first_seen_s -> BigInt,
        changed -> BigInt,
        vouch -> Double,
    }
}

diesel::table! {
    market_clock (id) {
        id -> Integer,
        value -> BigInt,
    }
}

diesel::table! {
    registered (id) {
        id -> Text,
        agent -> Text,
        buyer -> Text,
        envelope -> Text,
        agent_signature -> Text,
        end_s -> BigInt,
        registered_s -> BigInt,
        audit_passed_s -> BigInt,
        audit_failed_s -> BigInt,
    }
}

diesel::table! {
    registered_objects (contract_id, name) {
        contract_id -> Text,
        name -> Text,
        merkle_root -> Text,
        leaf_count -> BigInt,
        size -> BigInt,
    }
}

diesel::table! {
    reports (counter, entity) {
        entity -> Text,
        counter -> BigInt,
        body_sha256 -> Text,
        contract_id -> Text,
        agent -> Text,
        outcome -> Text,
        created_s -> BigInt,
    }
}

diesel::table! {
    counted_reports (contract_id, kind) {
        contract_id -> Text,
        kind -> Text,
        entity -> Text,
        counter -> BigInt,
        outcome -> Text,
        weight -> Double,
        created_s -> BigInt,
    }
}

diesel::allow_tables_to_appear_in_same_query!(agents, registered);

diesel::table! {
    market_leases (name) {
        name -> Text,
        holder -> Text,
        expires_ms -> BigInt,
    }
}
