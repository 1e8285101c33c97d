//! The ring backend of `jsonwebtoken`: a [`CryptoProvider`] whose signers and verifiers
//! are ring's HMAC, RSA (PKCS#1 v1.5 and PSS), ECDSA (P-256, P-384) and Ed25519.
//!
//! jsonwebtoken 10 moved its cryptography behind this provider and ships two backends,
//! aws-lc-rs and RustCrypto; ringgate enables neither, so the process keeps one crypto
//! stack (ring, shared with rustls). [`install`] makes [`RING_PROVIDER`] the process
//! default; [`super::AuthSettings::load`] calls it before any key is used, so no
//! jsonwebtoken call can reach the crate's "no provider" fallback, which panics.
//!
//! Verification is the only part on the request path (and only when the identity cache
//! misses). Signing exists for tests, benches and `ringgate demo`, which mint tokens.

use jsonwebtoken::crypto::{CryptoProvider, JwkUtils, JwtSigner, JwtVerifier};
use jsonwebtoken::errors::{Error, ErrorKind};
use jsonwebtoken::jwk::{EllipticCurve, ThumbprintHash};
use jsonwebtoken::signature;
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, DecodingKeyKind, EncodingKey};
use ring::rand::SystemRandom;
use ring::signature::{self as sig, KeyPair};
use ring::{digest, hmac};

/// The provider installed by [`install`].
pub static RING_PROVIDER: CryptoProvider = CryptoProvider {
    signer_factory: new_signer,
    verifier_factory: new_verifier,
    jwk_utils: JwkUtils {
        extract_rsa_public_key_components,
        extract_ec_public_key_coordinates,
        compute_digest,
    },
};

/// Make [`RING_PROVIDER`] jsonwebtoken's process-wide provider. Idempotent; fails only
/// if some other provider was installed first.
pub fn install() -> Result<(), ProviderConflict> {
    match RING_PROVIDER.install_default() {
        Ok(()) => Ok(()),
        Err(current) if std::ptr::eq(current, &RING_PROVIDER) => Ok(()),
        Err(_) => Err(ProviderConflict),
    }
}

/// Another jsonwebtoken `CryptoProvider` was installed before ringgate's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProviderConflict;

/// The key family an algorithm needs: the check that keeps an RSA public key from ever
/// being used as an HMAC secret, whatever the token says.
pub fn family(alg: Algorithm) -> AlgorithmFamily {
    match alg {
        Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => AlgorithmFamily::Hmac,
        Algorithm::RS256
        | Algorithm::RS384
        | Algorithm::RS512
        | Algorithm::PS256
        | Algorithm::PS384
        | Algorithm::PS512 => AlgorithmFamily::Rsa,
        Algorithm::ES256 | Algorithm::ES384 => AlgorithmFamily::Ec,
        Algorithm::EdDSA => AlgorithmFamily::Ed,
    }
}

/// The JOSE name of an algorithm (`alg` values are case-sensitive, RFC 7515 4.1.1).
pub fn name(alg: Algorithm) -> &'static str {
    match alg {
        Algorithm::HS256 => "HS256",
        Algorithm::HS384 => "HS384",
        Algorithm::HS512 => "HS512",
        Algorithm::RS256 => "RS256",
        Algorithm::RS384 => "RS384",
        Algorithm::RS512 => "RS512",
        Algorithm::PS256 => "PS256",
        Algorithm::PS384 => "PS384",
        Algorithm::PS512 => "PS512",
        Algorithm::ES256 => "ES256",
        Algorithm::ES384 => "ES384",
        Algorithm::EdDSA => "EdDSA",
    }
}

fn hmac_algorithm(alg: Algorithm) -> Option<hmac::Algorithm> {
    match alg {
        Algorithm::HS256 => Some(hmac::HMAC_SHA256),
        Algorithm::HS384 => Some(hmac::HMAC_SHA384),
        Algorithm::HS512 => Some(hmac::HMAC_SHA512),
        _ => None,
    }
}

fn rsa_parameters(alg: Algorithm) -> Option<&'static sig::RsaParameters> {
    match alg {
        Algorithm::RS256 => Some(&sig::RSA_PKCS1_2048_8192_SHA256),
        Algorithm::RS384 => Some(&sig::RSA_PKCS1_2048_8192_SHA384),
        Algorithm::RS512 => Some(&sig::RSA_PKCS1_2048_8192_SHA512),
        Algorithm::PS256 => Some(&sig::RSA_PSS_2048_8192_SHA256),
        Algorithm::PS384 => Some(&sig::RSA_PSS_2048_8192_SHA384),
        Algorithm::PS512 => Some(&sig::RSA_PSS_2048_8192_SHA512),
        _ => None,
    }
}

fn rsa_encoding(alg: Algorithm) -> Option<&'static dyn sig::RsaEncoding> {
    match alg {
        Algorithm::RS256 => Some(&sig::RSA_PKCS1_SHA256),
        Algorithm::RS384 => Some(&sig::RSA_PKCS1_SHA384),
        Algorithm::RS512 => Some(&sig::RSA_PKCS1_SHA512),
        Algorithm::PS256 => Some(&sig::RSA_PSS_SHA256),
        Algorithm::PS384 => Some(&sig::RSA_PSS_SHA384),
        Algorithm::PS512 => Some(&sig::RSA_PSS_SHA512),
        _ => None,
    }
}

/// ECDSA with the fixed-length `r || s` encoding that JWS uses (RFC 7518 3.4).
fn ecdsa_verification(alg: Algorithm) -> Option<&'static sig::EcdsaVerificationAlgorithm> {
    match alg {
        Algorithm::ES256 => Some(&sig::ECDSA_P256_SHA256_FIXED),
        Algorithm::ES384 => Some(&sig::ECDSA_P384_SHA384_FIXED),
        _ => None,
    }
}

fn ecdsa_signing(alg: Algorithm) -> Option<&'static sig::EcdsaSigningAlgorithm> {
    match alg {
        Algorithm::ES256 => Some(&sig::ECDSA_P256_SHA256_FIXED_SIGNING),
        Algorithm::ES384 => Some(&sig::ECDSA_P384_SHA384_FIXED_SIGNING),
        _ => None,
    }
}

fn key_format() -> Error {
    ErrorKind::InvalidKeyFormat.into()
}

enum VerifyKey {
    Hmac(hmac::Key),
    /// SPKI-less public key bytes: PKCS#1 `RSAPublicKey`, an uncompressed EC point, or
    /// the 32 bytes of an Ed25519 key (what jsonwebtoken's PEM and JWK loaders produce).
    Public(&'static dyn sig::VerificationAlgorithm, Vec<u8>),
    /// An RSA key from a JWK's `n` and `e`.
    RsaComponents(&'static sig::RsaParameters, Vec<u8>, Vec<u8>),
}

struct RingVerifier {
    alg: Algorithm,
    key: VerifyKey,
}

impl signature::Verifier<Vec<u8>> for RingVerifier {
    fn verify(&self, msg: &[u8], signature: &Vec<u8>) -> Result<(), signature::Error> {
        let verified = match &self.key {
            // Constant-time comparison of the tag (ring's `hmac::verify`).
            VerifyKey::Hmac(key) => hmac::verify(key, msg, signature),
            VerifyKey::Public(alg, bytes) => {
                sig::UnparsedPublicKey::new(*alg, bytes).verify(msg, signature)
            }
            VerifyKey::RsaComponents(params, n, e) => {
                sig::RsaPublicKeyComponents { n, e }.verify(params, msg, signature)
            }
        };
        verified.map_err(|_| signature::Error::new())
    }
}

impl JwtVerifier for RingVerifier {
    fn algorithm(&self) -> Algorithm {
        self.alg
    }
}

fn new_verifier(alg: &Algorithm, key: &DecodingKey) -> Result<Box<dyn JwtVerifier>, Error> {
    let alg = *alg;
    if key.family() != family(alg) {
        return Err(ErrorKind::InvalidAlgorithm.into());
    }
    let key = match (key.kind(), alg) {
        (DecodingKeyKind::SecretOrDer(secret), _) if family(alg) == AlgorithmFamily::Hmac => {
            let hmac_alg = hmac_algorithm(alg).ok_or_else(key_format)?;
            VerifyKey::Hmac(hmac::Key::new(hmac_alg, secret))
        }
        (DecodingKeyKind::SecretOrDer(der), _) => {
            let verification: &'static dyn sig::VerificationAlgorithm =
                match (rsa_parameters(alg), ecdsa_verification(alg)) {
                    (Some(rsa), _) => rsa,
                    (_, Some(ec)) => ec,
                    _ if alg == Algorithm::EdDSA => &sig::ED25519,
                    _ => return Err(key_format()),
                };
            VerifyKey::Public(verification, der.clone())
        }
        (DecodingKeyKind::RsaModulusExponent { n, e }, _) => {
            let params = rsa_parameters(alg).ok_or_else(key_format)?;
            VerifyKey::RsaComponents(params, n.clone(), e.clone())
        }
    };
    Ok(Box::new(RingVerifier { alg, key }))
}

enum SignKey {
    Hmac(hmac::Key),
    Ecdsa(sig::EcdsaKeyPair),
    Ed25519(sig::Ed25519KeyPair),
    Rsa(sig::RsaKeyPair, &'static dyn sig::RsaEncoding),
}

struct RingSigner {
    alg: Algorithm,
    key: SignKey,
}

impl signature::Signer<Vec<u8>> for RingSigner {
    fn try_sign(&self, msg: &[u8]) -> Result<Vec<u8>, signature::Error> {
        let rng = SystemRandom::new();
        match &self.key {
            SignKey::Hmac(key) => Ok(hmac::sign(key, msg).as_ref().to_vec()),
            SignKey::Ecdsa(pair) => pair
                .sign(&rng, msg)
                .map(|s| s.as_ref().to_vec())
                .map_err(|_| signature::Error::new()),
            SignKey::Ed25519(pair) => Ok(pair.sign(msg).as_ref().to_vec()),
            SignKey::Rsa(pair, encoding) => {
                let mut out = vec![0; pair.public().modulus_len()];
                pair.sign(*encoding, &rng, msg, &mut out)
                    .map_err(|_| signature::Error::new())?;
                Ok(out)
            }
        }
    }
}

impl JwtSigner for RingSigner {
    fn algorithm(&self) -> Algorithm {
        self.alg
    }
}

fn new_signer(alg: &Algorithm, key: &EncodingKey) -> Result<Box<dyn JwtSigner>, Error> {
    let alg = *alg;
    if key.family() != family(alg) {
        return Err(ErrorKind::InvalidAlgorithm.into());
    }
    let der = key.inner();
    let key = match family(alg) {
        AlgorithmFamily::Hmac => {
            let hmac_alg = hmac_algorithm(alg).ok_or_else(key_format)?;
            SignKey::Hmac(hmac::Key::new(hmac_alg, key.try_get_hmac_secret()?))
        }
        AlgorithmFamily::Ec => {
            let signing = ecdsa_signing(alg).ok_or_else(key_format)?;
            let pair = sig::EcdsaKeyPair::from_pkcs8(signing, der, &SystemRandom::new())
                .map_err(|_| Error::from(ErrorKind::InvalidEcdsaKey))?;
            SignKey::Ecdsa(pair)
        }
        AlgorithmFamily::Ed => SignKey::Ed25519(
            sig::Ed25519KeyPair::from_pkcs8_maybe_unchecked(der)
                .map_err(|_| Error::from(ErrorKind::InvalidEddsaKey))?,
        ),
        AlgorithmFamily::Rsa => {
            let encoding = rsa_encoding(alg).ok_or_else(key_format)?;
            // jsonwebtoken hands over PKCS#1 `RSAPrivateKey`; accept PKCS#8 as well.
            let pair = sig::RsaKeyPair::from_der(der)
                .or_else(|_| sig::RsaKeyPair::from_pkcs8(der))
                .map_err(|e| Error::from(ErrorKind::InvalidRsaKey(e.to_string())))?;
            SignKey::Rsa(pair, encoding)
        }
    };
    Ok(Box::new(RingSigner { alg, key }))
}

fn extract_rsa_public_key_components(der: &[u8]) -> Result<(Vec<u8>, Vec<u8>), Error> {
    let pair = sig::RsaKeyPair::from_der(der)
        .or_else(|_| sig::RsaKeyPair::from_pkcs8(der))
        .map_err(|e| Error::from(ErrorKind::InvalidRsaKey(e.to_string())))?;
    let components = sig::RsaPublicKeyComponents::<Vec<u8>>::from(pair.public());
    Ok((components.n, components.e))
}

fn extract_ec_public_key_coordinates(
    der: &[u8],
    alg: Algorithm,
) -> Result<(EllipticCurve, Vec<u8>, Vec<u8>), Error> {
    let (curve, coordinate_len) = match alg {
        Algorithm::ES256 => (EllipticCurve::P256, 32),
        Algorithm::ES384 => (EllipticCurve::P384, 48),
        _ => return Err(ErrorKind::InvalidEcdsaKey.into()),
    };
    let signing = ecdsa_signing(alg).ok_or(ErrorKind::InvalidEcdsaKey)?;
    let pair = sig::EcdsaKeyPair::from_pkcs8(signing, der, &SystemRandom::new())
        .map_err(|_| Error::from(ErrorKind::InvalidEcdsaKey))?;
    match pair.public_key().as_ref().split_first() {
        Some((4, point)) if point.len() == 2 * coordinate_len => {
            let (x, y) = point.split_at(coordinate_len);
            Ok((curve, x.to_vec(), y.to_vec()))
        }
        _ => Err(ErrorKind::InvalidEcdsaKey.into()),
    }
}

fn compute_digest(data: &[u8], hash: ThumbprintHash) -> Vec<u8> {
    let algorithm = match hash {
        ThumbprintHash::SHA256 => &digest::SHA256,
        ThumbprintHash::SHA384 => &digest::SHA384,
        ThumbprintHash::SHA512 => &digest::SHA512,
    };
    digest::digest(algorithm, data).as_ref().to_vec()
}
