//! Session ids (uids). A uid is a UUID string (RFC 9562) of any version:
//! SciStream's own client makes version-1 uuids, `s2uc` makes random
//! version-4 ones, drawn from the operating system's cryptographically
//! secure generator so that a uid cannot be guessed by another user of the
//! same gateway. The API accepts every form the `uuid` crate parses and
//! keys sessions by the canonical lowercase hyphenated form, so that
//! `A1B2...` and `a1b2...` name the same session.

use ring::rand::SecureRandom;
use uuid::Uuid;

use crate::client::error::ClientError;

/// A fresh session id, `xxxxxxxx-xxxx-4xxx-Vxxx-xxxxxxxxxxxx` in lowercase
/// hexadecimal (V is 8, 9, a or b), from 122 random bits of `rng`
/// (`ring::rand::SystemRandom` in `s2uc`).
pub fn new_uid(rng: &dyn SecureRandom) -> Result<String, ClientError> {
    let mut bytes = [0u8; 16];
    rng.fill(&mut bytes).map_err(|_| ClientError::Random)?;
    Ok(v4_from(bytes))
}

/// The version-4 uuid string made of `random` (version and variant bits
/// set by `uuid`).
fn v4_from(random: [u8; 16]) -> String {
    uuid::Builder::from_random_bytes(random)
        .into_uuid()
        .hyphenated()
        .to_string()
}

/// The canonical form (lowercase, hyphenated) of the UUID string `s`, in
/// any version and any form `uuid` parses (hyphenated, simple, braced,
/// `urn:uuid:`); `None` if `s` is not a UUID.
pub fn canonical_uid(s: &str) -> Option<String> {
    Uuid::try_parse(s).ok().map(|u| u.hyphenated().to_string())
}

/// Whether `s` has the shape [`new_uid`] produces: a lowercase version-4,
/// variant-1 UUID string.
pub fn is_uuid_v4(s: &str) -> bool {
    match Uuid::try_parse(s) {
        Ok(u) => {
            u.get_version_num() == 4
                && u.get_variant() == uuid::Variant::RFC4122
                && u.hyphenated().to_string() == s
        }
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::rand::SystemRandom;

    #[test]
    fn version_and_variant_bits_are_set() {
        assert_eq!(v4_from([0xff; 16]), "ffffffff-ffff-4fff-bfff-ffffffffffff");
        assert_eq!(v4_from([0; 16]), "00000000-0000-4000-8000-000000000000");
    }

    #[test]
    fn system_uids_are_well_formed_and_distinct() {
        let rng = SystemRandom::new();
        let uids: std::collections::HashSet<String> =
            (0..1000).map(|_| new_uid(&rng).unwrap()).collect();
        assert_eq!(uids.len(), 1000);
        assert!(uids.iter().all(|u| is_uuid_v4(u)), "{uids:?}");
    }

    #[test]
    fn shape_check_rejects_near_misses() {
        assert!(is_uuid_v4("0f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0"));
        assert!(!is_uuid_v4("0f1e2d3c-4b5a-3968-8776-a5b4c3d2e1f0")); // version 3
        assert!(!is_uuid_v4("0f1e2d3c-4b5a-4968-c776-a5b4c3d2e1f0")); // variant
        assert!(!is_uuid_v4("0F1E2D3C-4B5A-4968-8776-A5B4C3D2E1F0")); // uppercase
        assert!(!is_uuid_v4("0f1e2d3c4b5a-4968-8776-a5b4c3d2e1f0-")); // dashes
        assert!(!is_uuid_v4("0f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f"));
    }

    #[test]
    fn any_uuid_version_is_a_uid_in_canonical_form() {
        // Version 1, as Python's uuid.uuid1() makes them (SciStream's client).
        let v1 = "4f8583bc-a4d3-11ee-9fd6-034d1fcbd7c3";
        assert_eq!(canonical_uid(v1).as_deref(), Some(v1));
        // Versions 3, 5, 7 and the nil uuid are UUIDs too.
        for u in [
            "6fa459ea-ee8a-3ca4-894e-db77e160355e",
            "886313e1-3b8a-5372-9b90-0c9aee199e5d",
            "01890a5d-ac96-774b-bcce-b302099a8057",
            "00000000-0000-0000-0000-000000000000",
        ] {
            assert_eq!(canonical_uid(u).as_deref(), Some(u));
        }
        // Other forms of the same uuid name the same session.
        for form in [
            "4F8583BC-A4D3-11EE-9FD6-034D1FCBD7C3",
            "4f8583bca4d311ee9fd6034d1fcbd7c3",
            "{4f8583bc-a4d3-11ee-9fd6-034d1fcbd7c3}",
            "urn:uuid:4f8583bc-a4d3-11ee-9fd6-034d1fcbd7c3",
        ] {
            assert_eq!(canonical_uid(form).as_deref(), Some(v1), "{form}");
        }
        for bad in [
            "",
            "s1",
            "py-1",
            "4f8583bc-a4d3-11ee-9fd6-034d1fcbd7c",
            "4f8583bc-a4d3-11ee-9fd6-034d1fcbd7c3 ",
            "4f8583bg-a4d3-11ee-9fd6-034d1fcbd7c3",
        ] {
            assert_eq!(canonical_uid(bad), None, "{bad:?}");
        }
    }
}
