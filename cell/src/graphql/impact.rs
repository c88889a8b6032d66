//! Impact questions from the global tier, answered from memory.

use async_graphql::{Context, Object, Result, SimpleObject};
use shared::IntoGql;
use shared::impact::{Question, pack};

use super::query::reader;
use crate::impact;

#[derive(Default)]
pub struct ImpactQuery;

/// Per question, this cell's matching tenants.
#[derive(SimpleObject)]
pub struct ImpactMatches {
    /// One string per question: the matching tenant ids, sorted, each as 32
    /// hex digits (a UUID without hyphens), concatenated.
    pub matches: Vec<String>,
    /// How many tenants were checked.
    pub checked: i64,
}

#[Object]
impl ImpactQuery {
    /// Which of this cell's tenants each question matches (control plane,
    /// platform-admin and sre only).
    async fn impact_matches(
        &self,
        ctx: &Context<'_>,
        questions: Vec<Question>,
    ) -> Result<ImpactMatches> {
        let (st, p) = reader(ctx).gql()?;
        if !p.reads_everything() {
            return Err(shared::Error::Forbidden(
                "impact questions are for the control plane, platform-admin and sre".into(),
            )
            .into_gql());
        }
        if questions.is_empty() || questions.len() > 16 {
            return Err(
                shared::Error::bad_input("questions", "ask between 1 and 16 questions").into_gql(),
            );
        }
        let engine = st.flags.engine();
        let answer = impact::answer(
            &st.db,
            &engine,
            &st.config_index,
            &st.flag_answers,
            &questions,
        )
        .await
        .gql()?;
        Ok(ImpactMatches {
            matches: answer.matches.iter().map(|ids| pack(ids)).collect(),
            checked: answer.checked,
        })
    }
}
