package events

// ScanStorable runs the storable scan over doc and reports whether it read
// doc as valid JSON, with the problems it found (for tests).
func ScanStorable(doc []byte) (valid bool, errs []FieldError) {
	s := storableScan{b: doc, maxDepth: MaxDepth, root: "doc"}
	return s.document(), s.errs
}
