//! WeChat's XML messages as JSON objects with the same field names: `<xml><A>x</A><B><C>y</C></B>
//! </xml>` -> `{"A": "x", "B": {"C": "y"}}`; a repeated element becomes an array; every value is a
//! string, as XML has no types.

use quick_xml::events::Event;
use quick_xml::Reader;
use serde_json::{Map, Value};

/// Deeper nesting than this is not a WeChat message.
const MAX_DEPTH: usize = 16;

/// One element being read: its name, its child elements, its text.
struct Open {
    name: String,
    children: Map<String, Value>,
    text: String,
}

/// The root element's children as a JSON object; `None` for anything that is not one XML
/// document with a root element.
pub(crate) fn to_json(xml: &[u8]) -> Option<Map<String, Value>> {
    let text = std::str::from_utf8(xml).ok()?;
    let mut reader = Reader::from_str(text);
    let mut stack: Vec<Open> = Vec::new();
    let mut root = None;
    loop {
        match reader.read_event().ok()? {
            Event::Start(start) => {
                if stack.len() >= MAX_DEPTH || root.is_some() {
                    return None;
                }
                let name = std::str::from_utf8(start.name().as_ref()).ok()?.to_string();
                stack.push(Open {
                    name,
                    children: Map::new(),
                    text: String::new(),
                });
            }
            Event::Empty(empty) => {
                let name = std::str::from_utf8(empty.name().as_ref()).ok()?.to_string();
                insert(
                    &mut stack.last_mut()?.children,
                    name,
                    Value::String(String::new()),
                );
            }
            Event::Text(text) => stack.last_mut()?.text.push_str(&text.xml_content().ok()?),
            Event::CData(data) => stack.last_mut()?.text.push_str(&data.decode().ok()?),
            Event::GeneralRef(reference) => {
                let resolved = match reference.resolve_char_ref().ok()? {
                    Some(character) => character.to_string(),
                    None => {
                        let name = reference.decode().ok()?;
                        quick_xml::escape::resolve_xml_entity(&name)?.to_string()
                    }
                };
                stack.last_mut()?.text.push_str(&resolved);
            }
            Event::End(_) => {
                let closed = stack.pop()?;
                let value = if closed.children.is_empty() {
                    Value::String(closed.text)
                } else {
                    Value::Object(closed.children)
                };
                match stack.last_mut() {
                    Some(parent) => insert(&mut parent.children, closed.name, value),
                    None => {
                        root = Some(match value {
                            Value::Object(children) => children,
                            _ => Map::new(),
                        })
                    }
                }
            }
            Event::Eof => return if stack.is_empty() { root } else { None },
            Event::Decl(_) | Event::Comment(_) | Event::PI(_) | Event::DocType(_) => {}
        }
    }
}

/// Adds `value` under `name`; a name seen before becomes an array of its values.
fn insert(children: &mut Map<String, Value>, name: String, value: Value) {
    match children.get_mut(&name) {
        Some(Value::Array(values)) => values.push(value),
        Some(existing) => {
            let first = existing.take();
            *existing = Value::Array(vec![first, value]);
        }
        None => {
            children.insert(name, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wechat_message_becomes_an_object_with_the_same_names() {
        let xml =
            b"<xml><ToUserName><![CDATA[gh_1]]></ToUserName>\n<CreateTime>1700000000</CreateTime>\
            <Content><![CDATA[a < b]]></Content><Title>x &amp; y &#20320;</Title>\
            <List><Item>1</Item><Item>2</Item></List><Empty/></xml>";
        let json = Value::Object(to_json(xml).unwrap());
        assert_eq!(
            json,
            serde_json::json!({
                "ToUserName": "gh_1", "CreateTime": "1700000000", "Content": "a < b",
                "Title": "x & y 你", "List": { "Item": ["1", "2"] }, "Empty": "",
            })
        );
    }

    #[test]
    fn what_is_not_one_document_is_refused() {
        assert!(to_json(b"<xml><a>1</a>").is_none());
        assert!(to_json(b"<xml></xml><xml></xml>").is_none());
        assert!(to_json(b"not xml").is_none());
        let deep = "<a>".repeat(20) + &"</a>".repeat(20);
        assert!(to_json(deep.as_bytes()).is_none());
    }
}
