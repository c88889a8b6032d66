//! The API reference in `docs/api/` is generated from the checked-in SDL in
//! `graphql/` and must stay in sync with it. Regenerate with
//! `UPDATE_API_DOCS=1 cargo test -p e2e --test e2e -- api_reference::`.

use std::fmt::Write as _;
use std::path::Path;

use async_graphql::parser::parse_schema;
use async_graphql::parser::types::{
    FieldDefinition, InputValueDefinition, TypeDefinition, TypeKind, TypeSystemDefinition,
};

fn one_line(s: &str) -> String {
    s.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .replace('|', "\\|")
}

fn args(a: &[async_graphql::Positioned<InputValueDefinition>]) -> String {
    if a.is_empty() {
        return String::new();
    }
    let parts: Vec<String> = a
        .iter()
        .map(|v| {
            let v = &v.node;
            match &v.default_value {
                Some(d) => format!("{}: {} = {}", v.name.node, v.ty.node, d.node),
                None => format!("{}: {}", v.name.node, v.ty.node),
            }
        })
        .collect();
    format!("({})", parts.join(", "))
}

fn root_section(
    out: &mut String,
    title: &str,
    fields: &[async_graphql::Positioned<FieldDefinition>],
) {
    let _ = writeln!(out, "## {title}\n");
    let mut fields: Vec<&FieldDefinition> = fields.iter().map(|f| &f.node).collect();
    fields.sort_by(|a, b| a.name.node.cmp(&b.name.node));
    for f in fields {
        let _ = writeln!(out, "### `{}`\n", f.name.node);
        let _ = writeln!(
            out,
            "```graphql\n{}{}: {}\n```\n",
            f.name.node,
            args(&f.arguments),
            f.ty.node
        );
        if let Some(d) = &f.description {
            let _ = writeln!(out, "{}\n", d.node.trim());
        }
        let described: Vec<_> = f
            .arguments
            .iter()
            .filter(|a| a.node.description.is_some())
            .collect();
        if !described.is_empty() {
            let _ = writeln!(out, "| argument | description |\n|---|---|");
            for a in described {
                let _ = writeln!(
                    out,
                    "| `{}` | {} |",
                    a.node.name.node,
                    one_line(&a.node.description.as_ref().unwrap().node)
                );
            }
            out.push('\n');
        }
    }
}

fn type_section(out: &mut String, t: &TypeDefinition) {
    let (kind, rows): (&str, Vec<(String, String, String)>) = match &t.kind {
        TypeKind::Object(o) => (
            "object",
            o.fields
                .iter()
                .map(|f| {
                    let f = &f.node;
                    (
                        format!("{}{}", f.name.node, args(&f.arguments)),
                        f.ty.node.to_string(),
                        f.description
                            .as_ref()
                            .map(|d| one_line(&d.node))
                            .unwrap_or_default(),
                    )
                })
                .collect(),
        ),
        TypeKind::InputObject(i) => (
            "input",
            i.fields
                .iter()
                .map(|f| {
                    let f = &f.node;
                    let ty = match &f.default_value {
                        Some(d) => format!("{} = {}", f.ty.node, d.node),
                        None => f.ty.node.to_string(),
                    };
                    (
                        f.name.node.to_string(),
                        ty,
                        f.description
                            .as_ref()
                            .map(|d| one_line(&d.node))
                            .unwrap_or_default(),
                    )
                })
                .collect(),
        ),
        TypeKind::Enum(e) => (
            "enum",
            e.values
                .iter()
                .map(|v| {
                    (
                        v.node.value.node.to_string(),
                        String::new(),
                        v.node
                            .description
                            .as_ref()
                            .map(|d| one_line(&d.node))
                            .unwrap_or_default(),
                    )
                })
                .collect(),
        ),
        TypeKind::Scalar => ("scalar", Vec::new()),
        TypeKind::Interface(_) => ("interface", Vec::new()),
        TypeKind::Union(u) => (
            "union",
            u.members
                .iter()
                .map(|m| (m.node.to_string(), String::new(), String::new()))
                .collect(),
        ),
    };
    let _ = writeln!(out, "### `{}` ({kind})\n", t.name.node);
    if let Some(d) = &t.description {
        let _ = writeln!(out, "{}\n", d.node.trim());
    }
    if rows.is_empty() {
        return;
    }
    if kind == "enum" || kind == "union" {
        let _ = writeln!(out, "| value | description |\n|---|---|");
        for (n, _, d) in rows {
            let _ = writeln!(out, "| `{n}` | {d} |");
        }
    } else {
        let _ = writeln!(out, "| field | type | description |\n|---|---|---|");
        for (n, ty, d) in rows {
            let _ = writeln!(out, "| `{n}` | `{}` | {d} |", ty.replace('|', "\\|"));
        }
    }
    out.push('\n');
}

/// The Markdown reference of one SDL file.
fn render(title: &str, sdl_name: &str, sdl: &str) -> String {
    let doc = parse_schema(sdl).expect("the checked-in SDL parses");
    let mut types: Vec<&TypeDefinition> = Vec::new();
    for d in &doc.definitions {
        if let TypeSystemDefinition::Type(t) = d {
            types.push(&t.node);
        }
    }
    types.sort_by(|a, b| a.name.node.cmp(&b.name.node));
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# {title}\n\nGenerated from [`graphql/{sdl_name}`](../../graphql/{sdl_name}) by \
         `tests/tests/e2e/api_reference.rs`; do not edit. Regenerate with \
         `UPDATE_API_DOCS=1 cargo test -p e2e --test e2e -- api_reference::`. Errors carry \
         `extensions.code` (see the README's Errors section).\n"
    );
    for (root, title) in [
        ("Query", "Queries"),
        ("Mutation", "Mutations"),
        ("Subscription", "Subscriptions"),
    ] {
        if let Some(t) = types.iter().find(|t| t.name.node == root)
            && let TypeKind::Object(o) = &t.kind
        {
            root_section(&mut out, title, &o.fields);
        }
    }
    let _ = writeln!(out, "## Types\n");
    for t in types {
        if ["Query", "Mutation", "Subscription"].contains(&t.name.node.as_str()) {
            continue;
        }
        type_section(&mut out, t);
    }
    out.trim_end().to_owned() + "\n"
}

#[test]
fn api_reference_matches_the_checked_in_sdl() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut stale = Vec::new();
    for (sdl, doc, title) in [
        ("global.graphql", "global.md", "Global tier GraphQL API"),
        ("cell.graphql", "cell.md", "Cell GraphQL API"),
    ] {
        let text = std::fs::read_to_string(root.join("graphql").join(sdl)).unwrap();
        let generated = render(title, sdl, &text);
        let path = root.join("docs/api").join(doc);
        if std::env::var("UPDATE_API_DOCS").is_ok() {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, &generated).unwrap();
            continue;
        }
        if std::fs::read_to_string(&path).ok().as_deref() != Some(generated.as_str()) {
            stale.push(path.display().to_string());
        }
    }
    assert!(
        stale.is_empty(),
        "the API reference is out of date with graphql/: {stale:?}; regenerate with \
         UPDATE_API_DOCS=1 cargo test -p e2e --test e2e -- api_reference::"
    );
}

#[test]
fn the_reference_lists_every_root_field() {
    let sdl = "type Query { \"\"\"A tenant.\"\"\" tenant(id: ID!): T! cells: [String!]! }\ntype T { id: ID! }\nschema { query: Query }";
    let md = render("X", "x.graphql", sdl);
    assert!(md.contains("### `tenant`"), "{md}");
    assert!(md.contains("tenant(id: ID!): T!"), "{md}");
    assert!(md.contains("A tenant."), "{md}");
    assert!(md.contains("### `T` (object)"), "{md}");
}
