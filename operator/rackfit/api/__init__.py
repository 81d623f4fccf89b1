"""The LLMWorkload API (group rackfit.io): spec and status models, the source of the CRD."""
