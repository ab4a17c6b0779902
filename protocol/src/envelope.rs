//! Signed envelopes: documents that are stored or forwarded (offers, contracts, touchstones).
//! The payload is signed as text, so no canonical JSON is needed (DESIGN section 3).

use serde::{Deserialize, Serialize};

use crate::identity::{EntityId, KeyPair};

const ENVELOPE_TAG: &str = "LCP-SIGNED-1";

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum EnvelopeError {
    #[error("the envelope's signer is not a valid entity id")]
    InvalidSigner,
    #[error("the envelope's signature does not verify")]
    InvalidSignature,
    #[error("expected an envelope of type {expected}, got {found}")]
    WrongType { expected: String, found: String },
    #[error("the payload is not the expected JSON document: {0}")]
    InvalidPayload(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Envelope {
    pub signer: String,
    #[serde(rename = "type")]
    pub kind: String,
    /// The document as JSON text, exactly the signed bytes.
    pub payload: String,
    pub signature: String,
}

/// `LCP-SIGNED-1\n<type>\n<payload bytes>`.
pub fn envelope_signing_string(kind: &str, payload: &str) -> String {
    format!("{ENVELOPE_TAG}\n{kind}\n{payload}")
}

impl Envelope {
    pub fn sign(key: &KeyPair, kind: &str, payload: String) -> Envelope {
        let signature = key.sign_b64(envelope_signing_string(kind, &payload).as_bytes());
        Envelope {
            signer: key.entity().to_string(),
            kind: kind.to_owned(),
            payload,
            signature,
        }
    }

    /// Serialize `document` and sign it.
    pub fn sign_json<T: Serialize>(
        key: &KeyPair,
        kind: &str,
        document: &T,
    ) -> Result<Envelope, EnvelopeError> {
        let payload = serde_json::to_string(document)
            .map_err(|e| EnvelopeError::InvalidPayload(e.to_string()))?;
        Ok(Envelope::sign(key, kind, payload))
    }

    /// Check the signer's signature; answers the signer's id.
    pub fn verify(&self) -> Result<EntityId, EnvelopeError> {
        let signer = EntityId::parse(&self.signer).map_err(|_| EnvelopeError::InvalidSigner)?;
        let text = envelope_signing_string(&self.kind, &self.payload);
        if !signer.verify_b64(text.as_bytes(), &self.signature) {
            return Err(EnvelopeError::InvalidSignature);
        }
        Ok(signer)
    }

    /// Verify, check the type and parse the payload.
    pub fn open<T: serde::de::DeserializeOwned>(
        &self,
        kind: &str,
    ) -> Result<(EntityId, T), EnvelopeError> {
        if self.kind != kind {
            return Err(EnvelopeError::WrongType {
                expected: kind.to_owned(),
                found: self.kind.clone(),
            });
        }
        let signer = self.verify()?;
        let doc = serde_json::from_str(&self.payload)
            .map_err(|e| EnvelopeError::InvalidPayload(e.to_string()))?;
        Ok((signer, doc))
    }

    /// A counter-party's signature over the same signing string (e.g. the agent on a contract).
    pub fn countersign(&self, key: &KeyPair) -> String {
        key.sign_b64(envelope_signing_string(&self.kind, &self.payload).as_bytes())
    }

    pub fn verify_countersignature(&self, counterparty: &EntityId, signature: &str) -> bool {
        counterparty.verify_b64(
            envelope_signing_string(&self.kind, &self.payload).as_bytes(),
            signature,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelopes_verify_open_and_countersign() {
        let buyer = KeyPair::generate().expect("keygen");
        let agent = KeyPair::generate().expect("keygen");
        let env =
            Envelope::sign_json(&buyer, "contract", &serde_json::json!({"a": 1})).expect("sign");
        assert_eq!(env.verify().expect("verifies"), *buyer.entity());
        let (_, doc): (_, serde_json::Value) = env.open("contract").expect("opens");
        assert_eq!(doc["a"], 1);
        assert!(matches!(
            env.open::<serde_json::Value>("offer"),
            Err(EnvelopeError::WrongType { .. })
        ));
        let counter = env.countersign(&agent);
        assert!(env.verify_countersignature(agent.entity(), &counter));
        assert!(!env.verify_countersignature(buyer.entity(), &counter));
    }
}
