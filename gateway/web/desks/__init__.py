"""The desks of the national organisations and the support points, beside the municipality's
(``gateway/web/staff.py``): the travel-cost fund (``fund.py``), the campaign team and a
municipality's bags and campaigns (``campaign.py``), a support point's own entry
(``support_point.py``) and the partners' check of a declaration (``check.py``). Every page
runs the contract's operations (``operations.py``) as the signed-in employee."""
