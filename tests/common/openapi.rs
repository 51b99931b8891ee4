//! `openapi.yaml` as a checker of real answers: the operation must be documented, the status
//! documented for it, required headers present with allowed values, and a JSON body valid against
//! the schema. The schema subset wxgate's spec uses is implemented here: `$ref`, `type`,
//! `nullable`, `enum`, `required`, `properties`, `additionalProperties: false`, `items`, `minimum`.

use serde_json::{json, Map, Value};
use yaml_rust2::{Yaml, YamlLoader};

use super::Response;

/// The parsed specification.
pub struct Spec {
    root: Value,
}

impl Spec {
    /// Reads `openapi.yaml` from the repository root.
    pub fn load() -> Spec {
        let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.yaml"))
            .expect("openapi.yaml");
        let documents = YamlLoader::load_from_str(&text).expect("openapi.yaml is YAML");
        Spec {
            root: to_json(&documents[0]),
        }
    }

    /// Every documented operation: (method in upper case, path template).
    pub fn operations(&self) -> Vec<(String, String)> {
        let mut operations = Vec::new();
        for (path, item) in self.root["paths"].as_object().expect("paths") {
            for method in ["get", "post", "put", "delete", "patch", "head", "options"] {
                if item.get(method).is_some() {
                    operations.push((method.to_uppercase(), path.clone()));
                }
            }
        }
        operations
    }

    /// Checks one answer to `method template` (e.g. `POST /login/{app}`).
    pub fn check(&self, method: &str, template: &str, response: &Response) -> Result<(), String> {
        let item = &self.root["paths"][template];
        let operation = &item[method.to_lowercase()];
        if operation.is_null() && !item.is_null() && response.status == 405 {
            // Another method on a documented path: the spec's 405 answer (with Allow).
            let documented = json!({ "$ref": "#/components/responses/MethodNotAllowed" });
            let operation = json!({ "responses": { "405": documented } });
            return self.check_against(&operation, &format!("{method} {template}"), response);
        }
        if operation.is_null() {
            return Err(format!("{method} {template} is not documented"));
        }
        self.check_against(operation, &format!("{method} {template}"), response)
    }

    fn check_against(
        &self,
        operation: &Value,
        name: &str,
        response: &Response,
    ) -> Result<(), String> {
        let status = response.status.to_string();
        let documented = match operation["responses"].get(&status) {
            Some(documented) => self.resolve(documented),
            None => return Err(format!("{name}: status {status} is not documented")),
        };
        let context = format!("{name} {status}");
        for (name, header) in documented["headers"].as_object().into_iter().flatten() {
            let header = self.resolve(header);
            match response.header(name) {
                Some(value) => {
                    let value = match header["schema"]["type"].as_str() {
                        Some("integer") => value.parse::<i64>().map(Value::from).map_err(|_| {
                            format!("{context}: header {name}: {value:?} is no integer")
                        })?,
                        _ => Value::from(value),
                    };
                    self.validate(
                        &header["schema"],
                        &value,
                        &format!("{context} header {name}"),
                    )?;
                }
                None if header["required"] == true => {
                    return Err(format!("{context}: required header {name} missing"));
                }
                None => {}
            }
        }
        let Some(content) = documented["content"].as_object() else {
            return Ok(());
        };
        let content_type = response.header("content-type").unwrap_or_default();
        let media = content_type.split(';').next().unwrap_or_default().trim();
        let Some(media_type) = content.get(media) else {
            return Err(format!(
                "{context}: content type {content_type:?} is not documented"
            ));
        };
        if media == "application/json" {
            let body: Value = serde_json::from_slice(&response.body)
                .map_err(|error| format!("{context}: body is not JSON: {error}"))?;
            self.validate(&media_type["schema"], &body, &format!("{context} body"))?;
        }
        Ok(())
    }

    /// Follows a local `$ref` (`#/components/...`).
    fn resolve<'a>(&'a self, value: &'a Value) -> &'a Value {
        match value["$ref"].as_str() {
            Some(reference) => {
                let pointer = reference.strip_prefix('#').expect("a local $ref");
                let target = self
                    .root
                    .pointer(pointer)
                    .unwrap_or_else(|| panic!("{reference}"));
                self.resolve(target)
            }
            None => value,
        }
    }

    fn validate(&self, schema: &Value, value: &Value, at: &str) -> Result<(), String> {
        let schema = self.resolve(schema);
        if value.is_null() && schema["nullable"] == true {
            return Ok(());
        }
        let fits = match schema["type"].as_str() {
            None => true,
            Some("object") => value.is_object(),
            Some("array") => value.is_array(),
            Some("string") => value.is_string(),
            Some("integer") => value.is_i64() || value.is_u64(),
            Some("number") => value.is_number(),
            Some("boolean") => value.is_boolean(),
            Some(other) => return Err(format!("{at}: the checker does not know type {other}")),
        };
        if !fits {
            return Err(format!("{at}: {value} is not of type {}", schema["type"]));
        }
        if let Some(allowed) = schema["enum"].as_array() {
            if !allowed.contains(value) {
                return Err(format!("{at}: {value} is not one of {allowed:?}"));
            }
        }
        if let (Some(minimum), Some(number)) = (schema["minimum"].as_f64(), value.as_f64()) {
            if number < minimum {
                return Err(format!("{at}: {value} is below {minimum}"));
            }
        }
        if let Value::Object(object) = value {
            self.validate_object(schema, object, at)?;
        }
        if let (Value::Array(items), Some(item_schema)) = (value, schema.get("items")) {
            for (index, item) in items.iter().enumerate() {
                self.validate(item_schema, item, &format!("{at}[{index}]"))?;
            }
        }
        Ok(())
    }

    fn validate_object(
        &self,
        schema: &Value,
        object: &Map<String, Value>,
        at: &str,
    ) -> Result<(), String> {
        for required in schema["required"].as_array().into_iter().flatten() {
            let name = required.as_str().expect("required names");
            if !object.contains_key(name) {
                return Err(format!("{at}: {name} is required"));
            }
        }
        let properties = schema["properties"].as_object();
        for (name, member) in object {
            match properties.and_then(|properties| properties.get(name)) {
                Some(member_schema) => {
                    self.validate(member_schema, member, &format!("{at}.{name}"))?
                }
                None if schema["additionalProperties"] == false => {
                    return Err(format!("{at}: {name} is not a documented member"));
                }
                None => {}
            }
        }
        Ok(())
    }
}

fn to_json(yaml: &Yaml) -> Value {
    match yaml {
        Yaml::Hash(hash) => Value::Object(
            hash.iter()
                .map(|(key, value)| {
                    let key = match key {
                        Yaml::String(key) => key.clone(),
                        Yaml::Integer(number) => number.to_string(),
                        other => panic!("unsupported key {other:?}"),
                    };
                    (key, to_json(value))
                })
                .collect(),
        ),
        Yaml::Array(items) => Value::Array(items.iter().map(to_json).collect()),
        Yaml::String(text) => Value::from(text.as_str()),
        Yaml::Integer(number) => Value::from(*number),
        Yaml::Real(text) => Value::from(text.parse::<f64>().expect("a number")),
        Yaml::Boolean(flag) => Value::from(*flag),
        Yaml::Null => Value::Null,
        other => panic!("unsupported YAML node {other:?}"),
    }
}
