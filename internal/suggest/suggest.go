// Package suggest finds the known word a misspelt one most likely meant,
// for "did you mean" hints in configuration errors.
package suggest

import "strings"

// Closest returns the candidate nearest to word by edit distance (case
// folded), or "" when none is close enough to be a likely typo: at most a
// third of the word's length, and at least one, edits away.
func Closest(word string, candidates []string) string {
	best, bestDist := "", max(1, len(word)/3)+1
	w := strings.ToLower(word)
	for _, c := range candidates {
		if d := Distance(w, strings.ToLower(c)); d < bestDist {
			best, bestDist = c, d
		}
	}
	return best
}

// Hint is "; did you mean X?" for the closest candidate, or "".
func Hint(word string, candidates []string) string {
	if c := Closest(word, candidates); c != "" && c != word {
		return "; did you mean " + c + "?"
	}
	return ""
}

// Distance is the Damerau-Levenshtein (optimal string alignment) distance
// between a and b, counted in runes: a swap of two neighbours is one edit.
func Distance(a, b string) int {
	s, t := []rune(a), []rune(b)
	prev2 := make([]int, len(t)+1)
	prev := make([]int, len(t)+1)
	cur := make([]int, len(t)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(s); i++ {
		cur[0] = i
		for j := 1; j <= len(t); j++ {
			cost := 1
			if s[i-1] == t[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && s[i-1] == t[j-2] && s[i-2] == t[j-1] {
				cur[j] = min(cur[j], prev2[j-2]+1)
			}
		}
		prev2, prev, cur = prev, cur, prev2
	}
	return prev[len(t)]
}
