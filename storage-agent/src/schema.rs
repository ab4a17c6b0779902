//! Diesel tables of the agent's metadata (migrations/storage-agent/*). The command log's table,
//! `commands`, is [`node::commands`]'s (same columns, made by the agent's migrations).

diesel::table! {
    contracts (id) {
        id -> Text,
        buyer -> Text,
        issuer -> Text,
        block_bytes -> BigInt,
        start_s -> BigInt,
        end_s -> BigInt,
        contract_price -> BigInt,
        write_per_kib -> BigInt,
        read_per_kib -> BigInt,
        auditors -> Text,
        envelope -> Text,
        agent_signature -> Text,
        paid -> BigInt,
        spent -> BigInt,
        used_bytes -> BigInt,
        reaped -> Integer,
        created_s -> BigInt,
    }
}

diesel::table! {
    objects (contract_id, name) {
        contract_id -> Text,
        name -> Text,
        path -> Text,
        size -> BigInt,
        sha256 -> Text,
        merkle_root -> Text,
        leaf_count -> BigInt,
    }
}

diesel::table! {
    retrievals (token) {
        token -> Text,
        contract_id -> Text,
        object -> Text,
        uses_left -> BigInt,
        expires_s -> BigInt,
        token_sha256 -> Text,
        bytes_served -> BigInt,
        recorded_by -> Nullable<Text>,
    }
}

diesel::table! {
    token_records (gateway) {
        gateway -> Text,
        bytes_total -> BigInt,
    }
}

diesel::table! {
    payment_cursors (issuer) {
        issuer -> Text,
        next -> BigInt,
        income -> BigInt,
    }
}

diesel::table! {
    stats (name) {
        name -> Text,
        value -> BigInt,
    }
}

diesel::table! {
    prepaid (transaction_id, issuer) {
        transaction_id -> Text,
        issuer -> Text,
        amount -> BigInt,
    }
}

diesel::table! {
    contract_usage (contract_id) {
        contract_id -> Text,
        bytes_written -> BigInt,
        bytes_read -> BigInt,
        audits_answered -> BigInt,
        earned_writes -> BigInt,
        earned_reads -> BigInt,
        earned_audits -> BigInt,
        earned_contract -> BigInt,
        words_paid -> BigInt,
        words_used -> BigInt,
    }
}

diesel::table! {
    history (step, start_s, currency) {
        step -> Text,
        start_s -> BigInt,
        currency -> Text,
        bytes_written -> BigInt,
        bytes_read -> BigInt,
        bytes_read_tokens -> BigInt,
        audits_answered -> BigInt,
        earned_contract -> BigInt,
        earned_writes -> BigInt,
        earned_reads -> BigInt,
        earned_audits -> BigInt,
        by_deposit -> BigInt,
        by_payword -> BigInt,
        by_tab -> BigInt,
        paywords_redeemed -> BigInt,
        used_bytes -> BigInt,
        reserved_bytes -> BigInt,
        probes_answered -> BigInt,
        audits_passed -> BigInt,
        audits_failed -> BigInt,
        p_fail -> Nullable<Double>,
    }
}

diesel::joinable!(contract_usage -> contracts (contract_id));
diesel::allow_tables_to_appear_in_same_query!(contracts, contract_usage);
