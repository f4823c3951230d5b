//! Which dimensions of the teacher's vectors a student is trained to match.
//!
//! A student pruned from this teacher by heads, FFN neurons, layers or vocabulary keeps the teacher's
//! hidden size: every target is used whole. A width-pruned student (`surgery --hidden-ratio`) lost some
//! residual-stream dimensions; its config names them (`pruned_hidden`, the teacher's indices), so its
//! targets are the teacher's vectors at the dimensions it kept: the subspace its own vectors started in,
//! since the cut model equals the teacher with those dimensions masked. No projection layer is trained,
//! so the student's vectors stay directly comparable to the teacher's on the kept dimensions.

use sekator_model::BertConfig;

#[derive(Debug, Clone, PartialEq)]
pub struct TargetDims {
    /// The teacher's hidden size (what the teacher cache stores per vector).
    pub teacher: usize,
    /// Teacher dimensions kept by the student, ascending; `None`: all of them.
    pub keep: Option<Vec<usize>>,
}

impl TargetDims {
    /// The dimensions to match, or why this student cannot be trained against this teacher.
    pub fn of(teacher: &BertConfig, student: &BertConfig) -> Result<Self, String> {
        let t = teacher.hidden_size;
        if student.hidden_size == t {
            return Ok(Self {
                teacher: t,
                keep: None,
            });
        }
        if student.pruned_hidden.is_empty() || student.original_hidden_size() != t {
            return Err(format!(
                "student hidden size {} differs from the teacher's {t}, and the student is not a width cut of \
                 a model of the teacher's width (config.json `pruned_hidden` names {} removed dimensions of an \
                 original {}); the MSE targets need the teacher's dimensions the student kept",
                student.hidden_size,
                student.pruned_hidden.len(),
                student.original_hidden_size()
            ));
        }
        Ok(Self {
            teacher: t,
            keep: Some(student.kept_hidden()),
        })
    }

    /// Size of one target vector as the loss sees it (the student's hidden size).
    pub fn dim(&self) -> usize {
        self.keep.as_ref().map_or(self.teacher, Vec::len)
    }

    /// Row-major `[rows, teacher]` teacher vectors -> `[rows, dim()]`.
    pub fn select(&self, flat: Vec<f32>) -> Vec<f32> {
        let Some(keep) = &self.keep else {
            return flat;
        };
        flat.chunks(self.teacher)
            .flat_map(|row| keep.iter().map(move |&d| row[d]))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_width_cut_student_matches_the_dimensions_it_kept() {
        let teacher = BertConfig::new(100, 6, 1, 2, 8);
        let same = TargetDims::of(&teacher, &teacher).unwrap();
        assert_eq!((same.dim(), same.select(vec![1.0; 12]).len()), (6, 12));
        let mut student = teacher.clone();
        student.add_pruned_hidden(&[1, 4]);
        let t = TargetDims::of(&teacher, &student).unwrap();
        assert_eq!(t.keep, Some(vec![0, 2, 3, 5]));
        let rows: Vec<f32> = (0..12).map(|v| v as f32).collect();
        assert_eq!(
            t.select(rows),
            vec![0.0, 2.0, 3.0, 5.0, 6.0, 8.0, 9.0, 11.0]
        );
        // a student of another width that is no cut of this teacher is refused, naming both sizes
        let other = BertConfig::new(100, 4, 1, 2, 8);
        let err = TargetDims::of(&teacher, &other).unwrap_err();
        assert!(
            err.contains("student hidden size 4 differs from the teacher's 6"),
            "{err}"
        );
    }
}
