//! The pod's service account token, looked at before anyone is asked to trust it: it must be
//! a JWT issued to this pod's service account, for the audience it is used with, and not
//! expired. The signature is not checked here: STS or the Pod Identity Agent does that. What
//! this stops is a token of one service account or audience standing in for another's before
//! any cache is consulted.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;

#[derive(Deserialize)]
struct Claims {
    #[serde(default)]
    sub: String,
    #[serde(default)]
    aud: Audience,
    #[serde(default)]
    exp: Option<i64>,
}

#[derive(Deserialize, Default)]
#[serde(untagged)]
enum Audience {
    #[default]
    None,
    One(String),
    Many(Vec<String>),
}

impl Audience {
    fn contains(&self, audience: &str) -> bool {
        match self {
            Audience::None => false,
            Audience::One(one) => one == audience,
            Audience::Many(many) => many.iter().any(|a| a == audience),
        }
    }
}

/// Checks `token` for `system:serviceaccount:NAMESPACE:NAME` and `audience`, at `now` (Unix
/// seconds). The reason never quotes the token.
pub fn check(
    token: &str,
    namespace: &str,
    service_account: &str,
    audience: &str,
    now: i64,
) -> Result<(), String> {
    let mut parts = token.split('.');
    let (Some(_header), Some(payload), Some(_signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("the token is not a JWT".into());
    };
    let claims: Claims = URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .ok_or("the token's claims are not readable")?;
    let expected = format!("system:serviceaccount:{namespace}:{service_account}");
    if claims.sub != expected {
        return Err(format!(
            "the token is not one of service account {namespace}/{service_account}"
        ));
    }
    if !claims.aud.contains(audience) {
        return Err(format!("the token is not for audience {audience}"));
    }
    match claims.exp {
        Some(exp) if exp > now => Ok(()),
        Some(_) => Err("the token has expired".into()),
        None => Err("the token has no expiry".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwt(claims: serde_json::Value) -> String {
        let part = |v: &serde_json::Value| URL_SAFE_NO_PAD.encode(v.to_string());
        format!(
            "{}.{}.c2ln",
            part(&serde_json::json!({"alg": "RS256"})),
            part(&claims)
        )
    }

    #[test]
    fn a_token_of_the_pod_s_service_account_and_audience_passes() {
        let token = jwt(serde_json::json!({
            "sub": "system:serviceaccount:shop:web", "aud": ["sts.amazonaws.com"], "exp": 200
        }));
        assert_eq!(
            check(&token, "shop", "web", "sts.amazonaws.com", 100),
            Ok(())
        );
        let one = jwt(serde_json::json!({
            "sub": "system:serviceaccount:shop:web", "aud": "sts.amazonaws.com", "exp": 200
        }));
        assert_eq!(check(&one, "shop", "web", "sts.amazonaws.com", 100), Ok(()));
    }

    #[test]
    fn another_account_another_audience_or_an_old_token_is_refused() {
        let token = jwt(serde_json::json!({
            "sub": "system:serviceaccount:shop:web", "aud": ["vault"], "exp": 200
        }));
        let why = |r: Result<(), String>| r.unwrap_err();
        assert_eq!(
            why(check(&token, "shop", "web", "sts.amazonaws.com", 100)),
            "the token is not for audience sts.amazonaws.com"
        );
        assert_eq!(
            why(check(&token, "shop", "admin", "vault", 100)),
            "the token is not one of service account shop/admin"
        );
        assert_eq!(
            why(check(&token, "shop", "web", "vault", 300)),
            "the token has expired"
        );
        assert_eq!(
            why(check("opaque-secret", "shop", "web", "vault", 100)),
            "the token is not a JWT"
        );
        assert_eq!(
            why(check("a.!!!.c", "shop", "web", "vault", 100)),
            "the token's claims are not readable"
        );
    }
}
