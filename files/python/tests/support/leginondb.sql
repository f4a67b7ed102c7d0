-- The leginondb tables embuffer reads and writes, laid out the way Leginon's sinedon ORM
-- creates them: table = class name, DEF_id/DEF_timestamp, field names verbatim (spaces
-- included), references as `REF|<Class>|<field>` INT(20), sequences as `SEQ|<field>` TEXT.
-- BufferHostData and BufferFramePathData follow the reference DDL exactly.
-- One statement per table: the tests create only the tables a site has (sinedon creates a
-- table when its first row is inserted: support/mariadb_server.py and leginon_data.py).

CREATE TABLE `InstrumentData` (
  `DEF_id` int(16) NOT NULL AUTO_INCREMENT,
  `DEF_timestamp` timestamp NOT NULL DEFAULT current_timestamp(),
  `name` TEXT NULL,
  `hostname` TEXT NULL,
  `description` TEXT NULL,
  `cs` DOUBLE NULL,
  PRIMARY KEY (`DEF_id`), KEY `DEF_timestamp` (`DEF_timestamp`)
);

CREATE TABLE `SessionData` (
  `DEF_id` int(16) NOT NULL AUTO_INCREMENT,
  `DEF_timestamp` timestamp NOT NULL DEFAULT current_timestamp(),
  `name` TEXT NULL,
  `comment` TEXT NULL,
  `image path` TEXT NULL,
  `frame path` TEXT NULL,
  `uid` INT(20) NULL,
  `gid` INT(20) NULL,
  `hidden` TINYINT(1) NULL DEFAULT 0,
  PRIMARY KEY (`DEF_id`), KEY `DEF_timestamp` (`DEF_timestamp`)
);

CREATE TABLE `CameraEMData` (
  `DEF_id` int(16) NOT NULL AUTO_INCREMENT,
  `DEF_timestamp` timestamp NOT NULL DEFAULT current_timestamp(),
  `REF|SessionData|session` INT(20) NULL DEFAULT NULL,
  `REF|InstrumentData|ccdcamera` INT(20) NULL DEFAULT NULL,
  `frames name` TEXT NULL,
  `save frames` TINYINT(1) NULL DEFAULT 0,
  `align frames` TINYINT(1) NULL DEFAULT 0,
  `tiff frames` TINYINT(1) NULL DEFAULT 0,
  `eer frames` TINYINT(1) NULL DEFAULT 0,
  `frame flip` TINYINT(1) NULL DEFAULT 0,
  `frame rotate` INT(20) NULL DEFAULT 0,
  `nframes` INT(20) NULL DEFAULT NULL,
  `exposure time` DOUBLE NULL,
  `SEQ|use frames` TEXT NULL,
  PRIMARY KEY (`DEF_id`), KEY `DEF_timestamp` (`DEF_timestamp`),
  KEY `REF|SessionData|session` (`REF|SessionData|session`),
  KEY `REF|InstrumentData|ccdcamera` (`REF|InstrumentData|ccdcamera`)
);

CREATE TABLE `CorrectorPlanData` (
  `DEF_id` int(16) NOT NULL AUTO_INCREMENT,
  `DEF_timestamp` timestamp NOT NULL DEFAULT current_timestamp(),
  `REF|SessionData|session` INT(20) NULL DEFAULT NULL,
  `REF|CameraEMData|camera` INT(20) NULL DEFAULT NULL,
  `SEQ|bad_rows` TEXT NULL,
  `SEQ|bad_cols` TEXT NULL,
  `SEQ|bad_pixels` TEXT NULL,
  `despike` TINYINT(1) NULL DEFAULT 0,
  PRIMARY KEY (`DEF_id`), KEY `DEF_timestamp` (`DEF_timestamp`),
  KEY `REF|SessionData|session` (`REF|SessionData|session`),
  KEY `REF|CameraEMData|camera` (`REF|CameraEMData|camera`)
);

CREATE TABLE `DarkImageData` (
  `DEF_id` int(16) NOT NULL AUTO_INCREMENT,
  `DEF_timestamp` timestamp NOT NULL DEFAULT current_timestamp(),
  `REF|SessionData|session` INT(20) NULL DEFAULT NULL,
  `REF|CameraEMData|camera` INT(20) NULL DEFAULT NULL,
  `filename` TEXT NULL,
  `MRC|image` TEXT NULL,
  PRIMARY KEY (`DEF_id`), KEY `DEF_timestamp` (`DEF_timestamp`),
  KEY `REF|SessionData|session` (`REF|SessionData|session`),
  KEY `REF|CameraEMData|camera` (`REF|CameraEMData|camera`)
);

CREATE TABLE `BrightImageData` (
  `DEF_id` int(16) NOT NULL AUTO_INCREMENT,
  `DEF_timestamp` timestamp NOT NULL DEFAULT current_timestamp(),
  `REF|SessionData|session` INT(20) NULL DEFAULT NULL,
  `REF|CameraEMData|camera` INT(20) NULL DEFAULT NULL,
  `filename` TEXT NULL,
  `MRC|image` TEXT NULL,
  PRIMARY KEY (`DEF_id`), KEY `DEF_timestamp` (`DEF_timestamp`),
  KEY `REF|SessionData|session` (`REF|SessionData|session`),
  KEY `REF|CameraEMData|camera` (`REF|CameraEMData|camera`)
);

CREATE TABLE `NormImageData` (
  `DEF_id` int(16) NOT NULL AUTO_INCREMENT,
  `DEF_timestamp` timestamp NOT NULL DEFAULT current_timestamp(),
  `REF|SessionData|session` INT(20) NULL DEFAULT NULL,
  `REF|CameraEMData|camera` INT(20) NULL DEFAULT NULL,
  `REF|DarkImageData|dark` INT(20) NULL DEFAULT NULL,
  `REF|BrightImageData|bright` INT(20) NULL DEFAULT NULL,
  `filename` TEXT NULL,
  `MRC|image` TEXT NULL,
  PRIMARY KEY (`DEF_id`), KEY `DEF_timestamp` (`DEF_timestamp`),
  KEY `REF|SessionData|session` (`REF|SessionData|session`),
  KEY `REF|CameraEMData|camera` (`REF|CameraEMData|camera`)
);

CREATE TABLE `AcquisitionImageData` (
  `DEF_id` int(16) NOT NULL AUTO_INCREMENT,
  `DEF_timestamp` timestamp NOT NULL DEFAULT current_timestamp(),
  `REF|SessionData|session` INT(20) NULL DEFAULT NULL,
  `REF|CameraEMData|camera` INT(20) NULL DEFAULT NULL,
  `REF|NormImageData|norm` INT(20) NULL DEFAULT NULL,
  `REF|DarkImageData|dark` INT(20) NULL DEFAULT NULL,
  `REF|BrightImageData|bright` INT(20) NULL DEFAULT NULL,
  `REF|CorrectorPlanData|corrector plan` INT(20) NULL DEFAULT NULL,
  `filename` TEXT NULL,
  `label` TEXT NULL,
  `MRC|image` TEXT NULL,
  PRIMARY KEY (`DEF_id`), KEY `DEF_timestamp` (`DEF_timestamp`),
  KEY `REF|SessionData|session` (`REF|SessionData|session`),
  KEY `REF|CameraEMData|camera` (`REF|CameraEMData|camera`)
);

CREATE TABLE `BufferHostData` (
  `DEF_id` int(16) NOT NULL AUTO_INCREMENT,
  `DEF_timestamp` timestamp NOT NULL DEFAULT current_timestamp(),
  `REF|InstrumentData|ccdcamera` INT(20) NULL DEFAULT NULL,
  `buffer hostname` TEXT NULL,
  `buffer base path` TEXT NULL,
  `disabled` TINYINT(1) NULL DEFAULT 0,
  `append full head` TINYINT(1) NULL DEFAULT 0,
  PRIMARY KEY (`DEF_id`), KEY `DEF_timestamp` (`DEF_timestamp`),
  KEY `REF|InstrumentData|ccdcamera` (`REF|InstrumentData|ccdcamera`)
);

CREATE TABLE `BufferFramePathData` (
  `DEF_id` int(16) NOT NULL AUTO_INCREMENT,
  `DEF_timestamp` timestamp NOT NULL DEFAULT current_timestamp(),
  `REF|SessionData|session` INT(20) NULL DEFAULT NULL,
  `REF|BufferHostData|host` INT(20) NULL DEFAULT NULL,
  `buffer frame path` TEXT NULL,
  PRIMARY KEY (`DEF_id`), KEY `DEF_timestamp` (`DEF_timestamp`),
  KEY `REF|SessionData|session` (`REF|SessionData|session`),
  KEY `REF|BufferHostData|host` (`REF|BufferHostData|host`)
);
