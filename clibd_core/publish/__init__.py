"""Publishing a project in the forms the field's infrastructure reads: GBIF's Darwin Core Archive
(dwca.py), and the records that go or stay (selection.py). Publishing reads projects; projects never
import it."""
