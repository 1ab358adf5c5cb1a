-- Second round of the dbsync demo on the healthcare source: updates that bump
-- updated_at, inserts and one delete.
-- Afterwards: 20 caretakers, 302 patients, 302 patient_metadata, 601 usual_spots.
SET NAMES utf8mb4;

START TRANSACTION;

-- Weight and notes of three patients change.
UPDATE patients
   SET weight_kg = weight_kg + 1.5,
       notes = CONCAT(COALESCE(notes, ''), 'Follow-up: stable.'),
       updated_at = CURRENT_TIMESTAMP(6)
 WHERE id IN (1, 2, 3);

-- A caretaker leaves.
UPDATE caretakers SET active = 0, updated_at = CURRENT_TIMESTAMP(6) WHERE id = 5;

-- A new checkup raises a risk score.
UPDATE patient_metadata
   SET risk_score = 0.875, last_checkup_at = CURRENT_TIMESTAMP(3), updated_at = CURRENT_TIMESTAMP(6)
 WHERE patient_id = 2;

-- Two new patients with metadata and a usual spot each (bulk inserts leave gaps in
-- AUTO_INCREMENT, so their ids are "> 300" rather than 301 and 302).
INSERT INTO patients (caretaker_id, first_name, last_name, date_of_birth, sex, blood_type,
                      allergies, height_cm, weight_kg, mobility_score, notes, profile, embedding)
VALUES (4, 'Ingeborg', 'Larsen', '1941-11-03', 'female', 'O+', 'pollen', 162, 58.0, 4,
        'Admitted after a fall.', '{"smoker": false, "conditions": ["osteoporosis"], "visits_per_week": 3}',
        '[0.1200,0.5000,-0.3000,0.0000,0.9100,-0.4400,0.2500,0.0100]'),
       (7, 'Tomás', 'Herrera', '1938-04-19', 'male', NULL, '', 171, 70.5, 6,
        NULL, '{"smoker": true, "conditions": [], "visits_per_week": 1}',
        '[-0.0500,0.3300,0.7100,-0.2000,0.0000,0.6600,-0.9000,0.1500]');
INSERT INTO patient_metadata (patient_id, insurance_provider, insurance_number, emergency_contact,
                              emergency_phone, preferred_language, risk_score, attributes)
SELECT id, 'Kaiser', CONCAT('INS', LPAD(id, 9, '0')), 'Next of kin', '+1-555-0300', 'en', 0.25,
       '{"consent_research": true, "dnr": false, "diet": "regular"}'
FROM patients WHERE id > 300 ORDER BY id;
INSERT INTO usual_spots (patient_id, name, spot_type, address, latitude, longitude, usual_time, days, since_year)
SELECT id, 'Home', 'home', '5 Harbor View', 40.710000, -74.010000, NULL, '', 2024
FROM patients WHERE id > 300 ORDER BY id;

-- A spot that no longer applies.
DELETE FROM usual_spots WHERE id = 7;

COMMIT;
