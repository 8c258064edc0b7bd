//! The OpenAPI document served at `/openapi.json`: `openapi.json` as written,
//! with what the configuration decides (which destinations a message may
//! name, which policies can be described). `api::openapi_check` holds the
//! written part equal to the handlers' types.

use std::sync::LazyLock;

use serde_json::{json, Value};

/// The most names put in an `enum`; beyond, the document says "a string".
const MOST_NAMES: usize = 200;

static WRITTEN: LazyLock<Value> =
    LazyLock::new(|| serde_json::from_str(crate::OPENAPI).unwrap_or(Value::Null));

/// The document with `destinations` and `policies` as the enums of the
/// fields and path parameters that name them.
pub(crate) fn with_configuration(destinations: &[String], policies: &[String]) -> String {
    let mut doc = WRITTEN.clone();
    if !destinations.is_empty() && destinations.len() <= MOST_NAMES {
        if let Some(d) =
            doc.pointer_mut("/components/schemas/EnqueueRequest/properties/destination")
        {
            d["enum"] = json!(destinations);
        }
        for path in [
            "/v1/destinations/{name}/pause",
            "/v1/destinations/{name}/resume",
        ] {
            set_path_enum(&mut doc, path, "post", destinations);
        }
    }
    set_path_enum(&mut doc, "/v1/policies/{name}", "get", policies);
    serde_json::to_string(&doc).unwrap_or_else(|_| crate::OPENAPI.to_owned())
}

fn set_path_enum(doc: &mut Value, path: &str, method: &str, names: &[String]) {
    let Some(params) = doc
        .get_mut("paths")
        .and_then(|p| p.get_mut(path))
        .and_then(|p| p.get_mut(method))
        .and_then(|o| o.get_mut("parameters"))
        .and_then(Value::as_array_mut)
    else {
        return;
    };
    for p in params {
        if p["in"] == "path" && p["name"] == "name" {
            p["schema"]["enum"] = json!(names);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_configuration_names_its_destinations_and_policies() {
        let doc: Value = serde_json::from_str(&with_configuration(
            &["crm".into(), "erp".into()],
            &["standard".into()],
        ))
        .unwrap();
        assert_eq!(
            doc.pointer("/components/schemas/EnqueueRequest/properties/destination/enum"),
            Some(&json!(["crm", "erp"]))
        );
        let pause = &doc["paths"]["/v1/destinations/{name}/pause"]["post"]["parameters"];
        assert!(pause
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["schema"]["enum"] == json!(["crm", "erp"])));
        let policy = &doc["paths"]["/v1/policies/{name}"]["get"]["parameters"];
        assert!(policy
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["schema"]["enum"] == json!(["standard"])));
        // Many destinations: names stay out.
        let many: Vec<String> = (0..201).map(|i| format!("d{i}")).collect();
        let doc: Value = serde_json::from_str(&with_configuration(&many, &[])).unwrap();
        assert_eq!(
            doc.pointer("/components/schemas/EnqueueRequest/properties/destination/enum"),
            None
        );
    }
}
