from course_lib.lazy import defer_iri_grammar

defer_iri_grammar()  # before any grading module imports nbformat (and so jsonschema)
