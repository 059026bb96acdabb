import labs
from labs.provenance import Provenance, book_commit


def test_provenance_records_the_run():
    labs.seed(11)
    record = labs.provenance()
    assert isinstance(record, Provenance)
    assert record.seed == 11 and record.labs == labs.__version__
    assert record.wall_time_s > 0 and record.torch
    assert record.commit == book_commit()
    html = record._repr_html_()
    assert record.commit in html and "How this page was computed" in html
    assert "seed: 11" in str(record)
