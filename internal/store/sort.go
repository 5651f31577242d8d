package store

import "sort"

func sortEntries[T any](es []Entry[T]) {
	sort.Slice(es, func(i, j int) bool { return es[i].Key < es[j].Key })
}
