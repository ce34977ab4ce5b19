//! Closest spellings: the edit distance behind "closest: `Linear_Bias_ReLU`" (a pattern name, in the
//! cost model) and "did you mean `/m/.../MatMul`" (a node name, in a partition plan).

/// Edit distance between two strings, by characters: an insertion or a deletion costs 1, a substitution
/// `substitution`. With 1 it is the Levenshtein distance; with 2 (or more) only insertions and
/// deletions count, `len a + len b − 2·LCS`, so a name missing a word is closer to the name that has
/// it than to one where the word is replaced (`Linear_ReLU` is nearer `Linear_Bias_ReLU` than
/// `Linear_Bias`).
pub fn edit_distance(a: &str, b: &str, substitution: usize) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let replace = prev[j] + if ca == cb { 0 } else { substitution };
            cur[j + 1] = replace.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::edit_distance;

    #[test]
    fn levenshtein_and_insert_delete() {
        assert_eq!(edit_distance("kitten", "sitting", 1), 3);
        assert_eq!(edit_distance("kitten", "sitting", 2), 5);
        assert_eq!(edit_distance("", "abc", 1), 3);
        assert_eq!(edit_distance("abc", "", 2), 3);
        assert_eq!(edit_distance("MatMul", "Matmul", 1), 1);
        // a missing word beats a replaced one only without substitutions
        assert!(edit_distance("linearrelu", "linearbiasrelu", 2) < edit_distance("linearrelu", "linearbias", 2));
    }
}
