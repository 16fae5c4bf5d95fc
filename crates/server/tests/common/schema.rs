//! A small validator for the JSON Schema subset the OpenAPI document uses (`$ref`,
//! `type` incl. type lists, `properties`/`required`/`additionalProperties`, `items`,
//! `prefixItems`, `oneOf`/`anyOf`/`allOf`, `enum`), strict about undocumented fields: an
//! object schema that lists properties and says nothing about others rejects them, so a
//! response that grows a field the document does not describe fails the test.

use serde_json::Value;

pub struct Validator<'a> {
    doc: &'a Value,
}

impl<'a> Validator<'a> {
    pub fn new(doc: &'a Value) -> Self {
        Self { doc }
    }

    /// The schema of `method path`'s `status` response (JSON content), if documented.
    pub fn response_schema(&self, method: &str, path: &str, status: u16) -> Option<&'a Value> {
        let op = self.doc["paths"].get(path)?.get(method.to_ascii_lowercase())?;
        let resp = op["responses"].get(status.to_string())?;
        resp["content"].get("application/json").map(|c| &c["schema"])
    }

    /// Every problem of `value` against `schema`, with its JSON path.
    pub fn validate(&self, schema: &Value, value: &Value) -> Vec<String> {
        let mut errors = Vec::new();
        self.check(schema, value, "$", &mut errors);
        errors
    }

    fn resolve<'s>(&'s self, schema: &'s Value) -> &'s Value {
        match schema.get("$ref").and_then(Value::as_str) {
            Some(r) => {
                let name = r.trim_start_matches("#/components/schemas/");
                let target = &self.doc["components"]["schemas"][name];
                assert!(!target.is_null(), "unresolved $ref {r}");
                self.resolve(target)
            }
            None => schema,
        }
    }

    fn check(&self, schema: &Value, value: &Value, at: &str, errors: &mut Vec<String>) {
        let schema = self.resolve(schema);
        if let Some(all) = schema.get("allOf").and_then(Value::as_array) {
            // A composition (e.g. a flattened struct) documents the union of its parts'
            // fields: check against the parts merged, so each part's strictness does not
            // reject the others' fields.
            if all.len() > 1 && all.iter().all(|p| self.resolve(p).get("properties").is_some() || self.resolve(p).get("allOf").is_some()) {
                let merged = self.merge_all_of(all);
                self.check(&merged, value, at, errors);
                return;
            }
            for s in all {
                self.check(s, value, at, errors);
            }
        }
        for key in ["oneOf", "anyOf"] {
            if let Some(any) = schema.get(key).and_then(Value::as_array) {
                if !any.iter().any(|s| self.validate(s, value).is_empty()) {
                    errors.push(format!("{at}: {value} matches none of the {key} alternatives"));
                    return;
                }
            }
        }
        if let Some(options) = schema.get("enum").and_then(Value::as_array) {
            if !options.contains(value) {
                errors.push(format!("{at}: {value} is not one of {options:?}"));
            }
        }
        if let Some(t) = schema.get("type") {
            let types: Vec<&str> = match t {
                Value::String(s) => vec![s.as_str()],
                Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
                _ => vec![],
            };
            if !types.iter().any(|t| type_matches(t, value)) {
                errors.push(format!("{at}: expected {types:?}, found {value}"));
                return;
            }
        }
        match value {
            Value::Object(map) => {
                let props = schema.get("properties").and_then(Value::as_object);
                if let Some(required) = schema.get("required").and_then(Value::as_array) {
                    for r in required.iter().filter_map(Value::as_str) {
                        if !map.contains_key(r) {
                            errors.push(format!("{at}: required field {r:?} is missing"));
                        }
                    }
                }
                let extra = schema.get("additionalProperties");
                for (k, v) in map {
                    let here = format!("{at}.{k}");
                    match (props.and_then(|p| p.get(k)), extra) {
                        (Some(s), _) => self.check(s, v, &here, errors),
                        (None, Some(Value::Bool(false))) => errors.push(format!("{here}: not in the schema")),
                        (None, Some(s @ Value::Object(_))) => self.check(s, v, &here, errors),
                        (None, Some(_)) => {}
                        (None, None) if props.is_some() => errors.push(format!("{here}: not documented")),
                        (None, None) => {}
                    }
                }
            }
            Value::Array(items) => {
                let prefix = schema.get("prefixItems").and_then(Value::as_array);
                for (i, v) in items.iter().enumerate() {
                    let here = format!("{at}[{i}]");
                    match prefix.and_then(|p| p.get(i)) {
                        Some(s) => self.check(s, v, &here, errors),
                        None => {
                            if let Some(s) = schema.get("items").filter(|s| s.is_object()) {
                                self.check(s, v, &here, errors);
                            }
                        }
                    }
                }
            }
            _ => {}
        }
    }
}

impl Validator<'_> {
    /// The object schemas of `parts` as one: properties and required fields united.
    fn merge_all_of(&self, parts: &[Value]) -> Value {
        let mut properties = serde_json::Map::new();
        let mut required: Vec<Value> = Vec::new();
        for part in parts {
            let part = self.resolve(part);
            let part = match part.get("allOf").and_then(Value::as_array) {
                Some(nested) => self.merge_all_of(nested),
                None => part.clone(),
            };
            if let Some(p) = part.get("properties").and_then(Value::as_object) {
                properties.extend(p.clone());
            }
            required.extend(part.get("required").and_then(Value::as_array).cloned().unwrap_or_default());
        }
        serde_json::json!({"type": "object", "properties": properties, "required": required})
    }
}

fn type_matches(t: &str, v: &Value) -> bool {
    match t {
        "object" => v.is_object(),
        "array" => v.is_array(),
        "string" => v.is_string(),
        "integer" => v.is_i64() || v.is_u64(),
        "number" => v.is_number(),
        "boolean" => v.is_boolean(),
        "null" => v.is_null(),
        _ => true,
    }
}
