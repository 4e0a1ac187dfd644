//! The MQTT settings of the configuration, checked: where the broker is (`mqtt_url`) and the
//! topic prefixes. Depends on nothing else of the crate, so the configuration can check
//! itself with it.

/// Where the broker is, from `mqtt_url`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerAddress {
    /// Host name or address.
    pub host: String,
    /// Port (1883, or 8883 with TLS, unless given).
    pub port: u16,
    /// `mqtts://`: TLS with the system's root certificates.
    pub tls: bool,
    /// User name and password, when the URL has them.
    pub credentials: Option<(String, String)>,
}

/// Parses `mqtt://[user:password@]host[:port]` (also `tcp://`; `mqtts://` or `ssl://` for TLS).
pub fn parse_url(url: &str) -> Result<BrokerAddress, String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("`{url}` is not a URL: {e}"))?;
    let tls = match parsed.scheme() {
        "mqtt" | "tcp" => false,
        "mqtts" | "ssl" => true,
        other => {
            return Err(format!(
                "`{other}://` is not an MQTT scheme: use mqtt:// or mqtts://"
            ));
        }
    };
    let host = parsed
        .host_str()
        .filter(|h| !h.is_empty())
        .ok_or_else(|| format!("`{url}` names no host"))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    if !matches!(parsed.path(), "" | "/") || parsed.query().is_some() {
        return Err(format!("`{url}` must have no path or query"));
    }
    let credentials = (!parsed.username().is_empty()).then(|| {
        (
            parsed.username().to_string(),
            parsed.password().unwrap_or_default().to_string(),
        )
    });
    Ok(BrokerAddress {
        host,
        port: parsed.port().unwrap_or(if tls { 8883 } else { 1883 }),
        tls,
        credentials,
    })
}

fn check_prefix(what: &str, prefix: &str) -> Result<(), String> {
    if prefix.is_empty()
        || prefix.starts_with('/')
        || prefix.ends_with('/')
        || prefix.contains(['+', '#', '\0'])
    {
        return Err(format!(
            "{what} `{prefix}` must be a topic without wildcards and without a leading or trailing `/`"
        ));
    }
    Ok(())
}

/// Checks the MQTT settings: the broker's URL (when one is set) and both topic prefixes.
pub fn validate(url: &str, topic_prefix: &str, discovery_prefix: &str) -> Result<(), String> {
    if !url.is_empty() {
        parse_url(url)?;
    }
    check_prefix("mqtt_topic_prefix", topic_prefix)?;
    check_prefix("mqtt_discovery_prefix", discovery_prefix)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    #[test]
    fn broker_urls_are_parsed() {
        assert_eq!(
            parse_url("mqtt://127.0.0.1").unwrap(),
            BrokerAddress {
                host: "127.0.0.1".into(),
                port: 1883,
                tls: false,
                credentials: None
            }
        );
        let tls = parse_url("mqtts://ha:secret@broker.local").unwrap();
        assert_eq!(tls.port, 8883);
        assert!(tls.tls);
        assert_eq!(tls.credentials, Some(("ha".into(), "secret".into())));
        assert_eq!(parse_url("tcp://broker:1884").unwrap().port, 1884);
        assert!(parse_url("http://broker").is_err());
        assert!(parse_url("broker:1883").is_err());
        assert!(parse_url("mqtt://broker/topic").is_err());
    }

    #[test]
    fn prefixes_without_wildcards_are_accepted() {
        let mut config = Config::default();
        let check =
            |c: &Config| validate(&c.mqtt_url, &c.mqtt_topic_prefix, &c.mqtt_discovery_prefix);
        assert!(check(&config).is_ok());
        for bad in ["", "vigil/", "/vigil", "vi+gil", "vigil/#"] {
            config.mqtt_topic_prefix = bad.into();
            assert!(check(&config).is_err(), "{bad}");
        }
        config.mqtt_topic_prefix = "site/vigil".into();
        assert!(check(&config).is_ok());
    }
}
