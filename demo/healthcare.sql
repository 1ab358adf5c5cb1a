-- Healthcare schema and data for the TiDB source of the dbsync demo (loaded into a
-- MariaDB stand-in here; the SQL is MySQL/TiDB-compatible).
--   mariadb srcdb < demo/healthcare.sql
-- Deterministic: 20 caretakers, 300 patients, 300 patient_metadata, 600 usual_spots.
-- patients.embedding holds a vector(8) as text ('[0.8415,-0.2675,...]'): TiDB would use
-- its VECTOR type; the server option vector_columns 'patients.embedding' tells dbsync.
-- usual_spots is append-only (created_at only); the other tables also carry updated_at.
SET NAMES utf8mb4;
SET time_zone = '+00:00';   -- TIMESTAMP literals below are UTC

DROP TABLE IF EXISTS usual_spots, patient_metadata, patients, caretakers;

CREATE TABLE caretakers (
    id          INT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    full_name   VARCHAR(100) NOT NULL,
    email       VARCHAR(150) NOT NULL,
    phone       VARCHAR(30),
    role        ENUM('nurse', 'physician', 'therapist', 'aide') NOT NULL,
    shifts      SET('morning', 'afternoon', 'night', 'weekend') NOT NULL DEFAULT '',
    hired_on    DATE,
    active      TINYINT(1) NOT NULL DEFAULT 1,
    hourly_rate DECIMAL(8,2),
    created_at  DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    updated_at  DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6),
    UNIQUE KEY uq_caretakers_email (email)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

CREATE TABLE patients (
    id             BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    caretaker_id   INT NOT NULL,
    first_name     VARCHAR(60) NOT NULL,
    last_name      VARCHAR(60) NOT NULL,
    date_of_birth  DATE NOT NULL,
    sex            ENUM('female', 'male', 'other', 'unknown') NOT NULL DEFAULT 'unknown',
    blood_type     ENUM('A+', 'A-', 'B+', 'B-', 'AB+', 'AB-', 'O+', 'O-'),
    allergies      SET('penicillin', 'peanuts', 'latex', 'pollen', 'shellfish') NOT NULL DEFAULT '',
    height_cm      SMALLINT UNSIGNED,
    weight_kg      DECIMAL(5,1),
    mobility_score TINYINT UNSIGNED,
    is_active      BOOLEAN NOT NULL DEFAULT TRUE,
    notes          TEXT,
    profile        JSON,
    embedding      LONGTEXT COMMENT 'vector(8) as text',
    created_at     DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    updated_at     DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6),
    KEY idx_patients_caretaker (caretaker_id),
    KEY idx_patients_updated_at (updated_at),
    CONSTRAINT fk_patients_caretaker FOREIGN KEY (caretaker_id) REFERENCES caretakers (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

CREATE TABLE patient_metadata (
    id                 INT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    patient_id         BIGINT NOT NULL,
    insurance_provider VARCHAR(80),
    insurance_number   CHAR(12),
    emergency_contact  VARCHAR(100),
    emergency_phone    VARCHAR(30),
    preferred_language CHAR(2) NOT NULL DEFAULT 'en',
    risk_score         FLOAT,
    last_checkup_at    TIMESTAMP(3) NULL,
    record_hash        BINARY(16),
    attributes         JSON,
    created_at         DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    updated_at         DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6),
    UNIQUE KEY uq_patient_metadata_patient (patient_id),
    CONSTRAINT fk_patient_metadata_patient FOREIGN KEY (patient_id) REFERENCES patients (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

CREATE TABLE usual_spots (
    id          INT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    patient_id  BIGINT NOT NULL,
    name        VARCHAR(120) NOT NULL,
    spot_type   ENUM('home', 'park', 'cafe', 'clinic', 'library', 'community_center', 'other') NOT NULL,
    address     VARCHAR(200),
    latitude    DECIMAL(9,6),
    longitude   DECIMAL(9,6),
    usual_time  TIME,
    days        SET('mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun') NOT NULL DEFAULT '',
    since_year  YEAR,
    created_at  DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    KEY idx_usual_spots_patient (patient_id),
    CONSTRAINT fk_usual_spots_patient FOREIGN KEY (patient_id) REFERENCES patients (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

-- 20 caretakers, hired over the years, registered one per hour from 2024-01-02.
INSERT INTO caretakers (full_name, email, phone, role, shifts, hired_on, active, hourly_rate,
                        created_at, updated_at)
WITH RECURSIVE seq (n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM seq WHERE n < 20)
SELECT CONCAT(ELT(1 + n % 10, 'Maria', 'James', 'Aiko', 'Olusegun', 'Ingrid',
                  'Rahul', 'Sofía', 'Chen', 'Fatima', 'Lukas'), ' ',
              ELT(1 + (n * 3) % 10, 'Garcia', 'Smith', 'Yamamoto', 'Adeyemi', 'Berg',
                  'Sharma', 'López', 'Wei', 'Haddad', 'Müller')),
       CONCAT('caretaker', n, '@care.example'),
       CONCAT('+1-555-01', LPAD(n, 2, '0')),
       ELT(1 + n % 4, 'nurse', 'physician', 'therapist', 'aide'),
       ELT(1 + n % 5, 'morning', 'afternoon', 'night', 'morning,weekend', ''),
       DATE '2015-03-01' + INTERVAL (n * 83) DAY,
       n % 7 <> 0,
       ROUND(28 + (n % 9) * 3.25, 2),
       TIMESTAMP '2024-01-02 08:00:00' + INTERVAL n HOUR,
       TIMESTAMP '2024-01-02 08:00:00' + INTERVAL n HOUR
FROM seq
ORDER BY n;

-- 300 patients, one every 2 hours from 2024-01-05; every 50th has no embedding.
INSERT INTO patients (caretaker_id, first_name, last_name, date_of_birth, sex, blood_type,
                      allergies, height_cm, weight_kg, mobility_score, is_active, notes,
                      profile, embedding, created_at, updated_at)
WITH RECURSIVE seq (n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM seq WHERE n < 300)
SELECT 1 + n % 20,
       ELT(1 + n % 16, 'Ava', 'Liam', 'Zoë', 'Noah', 'José', 'Emma', 'Łukasz', 'Mia',
           'Oliver', 'Amara', '王芳', 'Elijah', 'Chloé', 'Mateo', 'Saanvi', 'Hannah'),
       ELT(1 + (n * 7) % 12, 'Johnson', 'Nguyen', 'O''Brien', 'Kowalski', 'Ibrahim', 'Rossi',
           'Andersson', 'Kim', 'Dubois', 'Okoro', 'Petrov', 'Silva'),
       DATE '1935-01-01' + INTERVAL ((n * 997) % 25000) DAY,
       ELT(1 + n % 4, 'female', 'male', 'female', IF(n % 8 = 3, 'other', 'male')),
       IF(n % 9 = 0, NULL, ELT(1 + n % 8, 'A+', 'A-', 'B+', 'B-', 'AB+', 'AB-', 'O+', 'O-')),
       ELT(1 + n % 6, '', 'penicillin', 'peanuts,latex', '', 'pollen', 'penicillin,shellfish'),
       150 + (n * 13) % 45,
       ROUND(48 + ((n * 37) % 600) / 10, 1),
       n % 11,
       n % 23 <> 0,
       IF(n % 5 = 0, CONCAT('Needs assistance with stairs.\nPrefers visits before noon (patient ', n, ').'), NULL),
       JSON_OBJECT('smoker', n % 6 = 0,
                   'conditions', IF(n % 3 = 0, JSON_ARRAY('hypertension', 'type 2 diabetes'),
                                    JSON_ARRAY('hypertension')),
                   'primary_physician', CONCAT('Dr. ', ELT(1 + n % 3, 'Hale', 'Moreau', 'Ito')),
                   'visits_per_week', 1 + n % 4),
       IF(n % 50 = 0, NULL,
          CONCAT('[', CONCAT_WS(',', ROUND(SIN(n), 4), ROUND(COS(n * 1.3), 4),
                                ROUND(SIN(n * 0.7 + 1), 4), ROUND(COS(n * 0.11), 4),
                                ROUND(SIN(n * 2.3), 4), ROUND(COS(n + 0.5), 4),
                                ROUND(SIN(n * 0.05), 4), ROUND(COS(n * 3.1), 4)), ']')),
       TIMESTAMP '2024-01-05 00:00:00' + INTERVAL (2 * n) HOUR,
       TIMESTAMP '2024-01-05 00:00:00' + INTERVAL (2 * n) HOUR
FROM seq
ORDER BY n;

-- One metadata row per patient.
INSERT INTO patient_metadata (patient_id, insurance_provider, insurance_number, emergency_contact,
                              emergency_phone, preferred_language, risk_score, last_checkup_at,
                              record_hash, attributes, created_at, updated_at)
SELECT p.id,
       ELT(1 + p.id % 5, 'Aetna', 'Allianz Care', 'Blue Shield', 'Kaiser', 'NHS'),
       CONCAT('INS', LPAD(p.id * 7919 % 1000000000, 9, '0')),
       CONCAT('Relative of ', p.first_name),
       CONCAT('+1-555-02', LPAD(p.id % 100, 2, '0')),
       ELT(1 + p.id % 6, 'en', 'es', 'de', 'fr', 'zh', 'pl'),
       ROUND((p.id * 0.0137) - FLOOR(p.id * 0.0137), 4),
       IF(p.id % 10 = 0, NULL, TIMESTAMP '2024-06-01 10:00:00' + INTERVAL (p.id * 17) HOUR),
       UNHEX(MD5(CONCAT('patient-', p.id))),
       JSON_OBJECT('consent_research', p.id % 4 <> 0, 'dnr', p.id % 29 = 0, 'diet', ELT(1 + p.id % 3, 'regular', 'low sodium', 'diabetic')),
       p.created_at + INTERVAL 10 MINUTE,
       p.created_at + INTERVAL 10 MINUTE
FROM patients AS p
ORDER BY p.id;

-- Two usual spots per patient: home and somewhere they go.
INSERT INTO usual_spots (patient_id, name, spot_type, address, latitude, longitude, usual_time,
                         days, since_year, created_at)
SELECT p.id,
       IF(k = 1, 'Home', ELT(1 + p.id % 5, 'Riverside Park', 'Corner Café', 'Eastside Clinic',
                             'Central Library', 'Senior Center')),
       IF(k = 1, 'home', ELT(1 + p.id % 5, 'park', 'cafe', 'clinic', 'library', 'community_center')),
       CONCAT(10 + (p.id * 7) % 990, ' ', ELT(1 + (p.id + k) % 6, 'Oak St', 'Maple Ave', 'Elm Rd',
                                               'Pine Ln', 'Cedar Blvd', 'Birch Way')),
       ROUND(40.700000 + ((p.id * 31 + k * 7) % 1000) / 10000, 6),
       ROUND(-74.000000 + ((p.id * 17 + k * 3) % 1000) / 10000, 6),
       IF(k = 1, NULL, MAKETIME(8 + p.id % 10, (p.id * 5) % 60, 0)),
       IF(k = 1, '', ELT(1 + p.id % 4, 'mon,wed,fri', 'tue,thu', 'sat,sun', 'mon')),
       2000 + p.id % 24,
       p.created_at + INTERVAL (20 + k) MINUTE
FROM patients AS p
CROSS JOIN (SELECT 1 AS k UNION ALL SELECT 2) AS kk
ORDER BY p.id, k;
