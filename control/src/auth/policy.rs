//! [`Policy`]: the `[[auth.allow]]` rules, deciding which endpoints an
//! authenticated principal may point the gateway at.
//!
//! A rule applies to a principal whose subject equals its `identity`, or
//! whose scopes include its `scope`. A target is allowed if any applicable
//! rule has a prefix containing its IP and a port range containing its
//! port. With `auth.mode = "none"` everything is allowed.

use std::net::SocketAddr;

use super::{AuthError, Principal};
use crate::config::{AllowRule, AllowSubject, AuthMode, AuthSection};

/// The allow-list of targets and remote listeners.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// `None`: authentication is off and everything is allowed.
    rules: Option<Vec<AllowRule>>,
}

impl Policy {
    /// The policy `auth` configures: its rules, or allow-all with
    /// `auth.mode = "none"`.
    pub fn new(auth: &AuthSection) -> Policy {
        match auth.mode {
            AuthMode::None => Policy::allow_all(),
            AuthMode::TokenFile(_) | AuthMode::Jwt(_) => Policy::from_rules(auth.allow.clone()),
        }
    }

    /// A policy that allows every target to everyone.
    pub fn allow_all() -> Policy {
        Policy { rules: None }
    }

    /// A policy of exactly `rules` (none: everything is forbidden).
    pub fn from_rules(rules: Vec<AllowRule>) -> Policy {
        Policy { rules: Some(rules) }
    }

    /// True if a rule applies to `who`.
    fn applies(rule: &AllowRule, who: &Principal) -> bool {
        match &rule.subject {
            AllowSubject::Identity(id) => *id == who.subject,
            AllowSubject::Scope(scope) => who.has_scope(scope),
        }
    }

    /// Ok if `who` may use `target` (a PROD app endpoint or a remote
    /// listener); [`AuthError::Forbidden`] otherwise.
    pub fn check_target(&self, who: &Principal, target: SocketAddr) -> Result<(), AuthError> {
        let Some(rules) = &self.rules else {
            return Ok(());
        };
        if rules
            .iter()
            .any(|r| Policy::applies(r, who) && r.permits(target))
        {
            return Ok(());
        }
        Err(AuthError::Forbidden(format!(
            "identity `{}` may not use target {target}",
            who.subject
        )))
    }

    /// Ok if `who` may use every one of `targets`; the first forbidden one
    /// is reported.
    pub fn check_targets(
        &self,
        who: &Principal,
        targets: impl IntoIterator<Item = SocketAddr>,
    ) -> Result<(), AuthError> {
        targets
            .into_iter()
            .try_for_each(|t| self.check_target(who, t))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{IpAddr, Ipv4Addr};

    fn rule(subject: AllowSubject, targets: &[&str], ports: &[(u16, u16)]) -> AllowRule {
        AllowRule {
            subject,
            targets: targets.iter().map(|t| t.parse().expect("prefix")).collect(),
            ports: ports.iter().map(|&(a, b)| a..=b).collect(),
        }
    }

    fn who(subject: &str, scopes: &[&str]) -> Principal {
        Principal {
            subject: subject.into(),
            scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
        }
    }

    fn at(a: u8, b: u8, c: u8, d: u8, port: u16) -> SocketAddr {
        SocketAddr::new(IpAddr::V4(Ipv4Addr::new(a, b, c, d)), port)
    }

    #[test]
    fn identity_rules() {
        let p = Policy::from_rules(vec![
            rule(
                AllowSubject::Identity("alice".into()),
                &["10.10.1.0/24"],
                &[(1024, 65535)],
            ),
            rule(
                AllowSubject::Identity("alice".into()),
                &["192.168.7.7/32"],
                &[(22, 22)],
            ),
        ]);
        let alice = who("alice", &[]);
        assert_eq!(p.check_target(&alice, at(10, 10, 1, 9, 5000)), Ok(()));
        assert_eq!(p.check_target(&alice, at(192, 168, 7, 7, 22)), Ok(()));
        // Outside every prefix.
        let e = p
            .check_target(&alice, at(10, 10, 2, 9, 5000))
            .expect_err("prefix");
        assert_eq!(
            e,
            AuthError::Forbidden("identity `alice` may not use target 10.10.2.9:5000".into())
        );
        assert_eq!(e.code(), tonic::Code::PermissionDenied);
        // Inside a prefix, outside that rule's ports (and the other rule's
        // prefix does not help).
        assert!(p.check_target(&alice, at(10, 10, 1, 9, 80)).is_err());
        assert!(p.check_target(&alice, at(192, 168, 7, 7, 5000)).is_err());
        // Another identity has no rule.
        assert!(p
            .check_target(&who("bob", &[]), at(10, 10, 1, 9, 5000))
            .is_err());
        assert!(p
            .check_targets(&alice, [at(10, 10, 1, 9, 5000), at(192, 168, 7, 7, 22)])
            .is_ok());
        let e = p
            .check_targets(&alice, [at(10, 10, 1, 9, 5000), at(10, 10, 3, 1, 5000)])
            .expect_err("second");
        assert!(e.to_string().contains("10.10.3.1:5000"), "{e}");
    }

    #[test]
    fn scope_rules() {
        let scope = "https://auth.globus.org/scopes/c42c0dac-0a52-408e-a04f-5d31bfe0aef8/scistream";
        let p = Policy::from_rules(vec![rule(
            AllowSubject::Scope(scope.into()),
            &["10.20.0.0/16"],
            &[(1, 65535)],
        )]);
        assert_eq!(
            p.check_target(&who("carol", &["openid", scope]), at(10, 20, 5, 5, 9000)),
            Ok(())
        );
        assert!(p
            .check_target(&who("carol", &["openid"]), at(10, 20, 5, 5, 9000))
            .is_err());
        // A scope rule never matches by subject.
        assert!(p
            .check_target(&who(scope, &[]), at(10, 20, 5, 5, 9000))
            .is_err());
    }

    #[test]
    fn empty_and_allow_all() {
        let none = Policy::from_rules(vec![]);
        assert!(none
            .check_target(&who("alice", &[]), at(10, 0, 0, 1, 1))
            .is_err());
        let all = Policy::allow_all();
        assert_eq!(
            all.check_target(&who("anonymous", &[]), at(8, 8, 8, 8, 53)),
            Ok(())
        );
        let auth = AuthSection {
            mode: AuthMode::None,
            allow: vec![],
        };
        assert_eq!(Policy::new(&auth), Policy::allow_all());
    }
}
