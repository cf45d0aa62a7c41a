package events

// ScanStorable runs the storable scan over doc and reports whether it read
// doc as valid JSON, with the problems it found (for tests).
func ScanStorable(doc []byte) (valid bool, errs []FieldError) {
	s := storableScan{b: doc, maxDepth: MaxDepth, root: "doc"}
	return s.document(), s.errs
}

// ParseStoredStrict is ParseStored without its fast path (for tests).
var ParseStoredStrict = parseStoredStrict

// ParseStoredFast is ParseStored's fast path alone: false when it defers
// to the strict path (for tests).
var ParseStoredFast = parseStoredFast
